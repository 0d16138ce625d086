"""The shadow A/B decision (brief 4.6): promote the challenger, keep the champion, or continue.

The service runs the challenger on a share of the champion's cases (``predictions.role = 'shadow'``, linked by
``shadow_of``); only the champion's answer is shown. Once a case has a confirmed label (histopathology first, else
the clinician's diagnosis; :func:`dermascan.store.feedback.confirmed_labels`), both models' melanoma flags on the
same image form a pair. The decision is made on the pairs:

* **Sensitivity**, on confirmed melanomas: the exact one-sided McNemar test. Only the discordant pairs carry
  information: ``b`` = the challenger flagged a melanoma the champion missed, ``c`` = the reverse. Under "no
  difference" each discordant pair is a fair coin, so ``p = P(X >= b)`` for ``X ~ Binomial(b + c, 1/2)`` (the
  brief's binomial test); the challenger is better when ``p < alpha`` (0.05).
* **Specificity**, on confirmed non-melanomas: non-inferiority. The paired difference (challenger minus champion)
  with its 95% Newcombe interval (:func:`~dermascan.evaluation.intervals.paired_difference_interval`); the
  challenger is not worse when the interval's lower end is above ``-margin`` (2 points).
* **Stop rule**: the test ends at ``min_melanomas`` (500) confirmed melanomas or ``max_days`` (30) days after the
  first shadow case, whichever comes first. Before that the verdict is ``continue`` whatever the figures say: one
  look, at the end, keeps the false-promotion rate at the test's level (:mod:`~dermascan.lifecycle.abtest_sim`
  measures it).

At the stop: ``promote`` when both hold, else ``keep champion``. :func:`decide` is the pure rule on counts (the
simulation calls it too); :func:`run_abtest` reads the store and writes ``abtest.json`` and ``abtest.html``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import warnings
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from dermascan import _html, _io
from dermascan.errors import ConfigError, DermaScanError
from dermascan.evaluation.intervals import paired_difference_bounds, paired_difference_interval, wilson_estimate
from dermascan.taxonomy import CLASSES, MELANOMA_INDEX

PROMOTE, KEEP, CONTINUE = "promote", "keep champion", "continue"
MELANOMA = CLASSES[MELANOMA_INDEX]


class NoShadowDataError(DermaScanError, LookupError):
    """The store holds no shadow predictions to compare (no challenger was shadowed)."""


@dataclass(frozen=True)
class ABSettings:
    """The decision's settings (the brief's values by default).

    Attributes:
        alpha: one-sided level of the McNemar test on melanoma sensitivity.
        margin: the specificity non-inferiority margin, as a proportion (0.02 = 2 points).
        confidence: coverage of the specificity difference's interval (two-sided; its lower end is the test).
        min_melanomas: confirmed melanomas that end the test.
        max_days: days after the first shadow case that end the test.
    """

    alpha: float = 0.05
    margin: float = 0.02
    confidence: float = 0.95
    min_melanomas: int = 500
    max_days: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"alpha must be in (0, 0.5), e.g. 0.05; got {self.alpha!r}")
        if not 0 <= self.margin < 1:
            raise ConfigError(f"margin is a proportion, 0.02 for 2 points; got {self.margin!r}")
        if self.min_melanomas < 1 or self.max_days <= 0:
            raise ConfigError("min_melanomas must be >= 1 and max_days > 0")


@dataclass(frozen=True)
class PairedCounts:
    """A paired 2x2 table of "right" answers of the two models on the same cases.

    For melanomas "right" is flagged; for the others it is not flagged.
    """

    both: int = 0
    champion_only: int = 0
    challenger_only: int = 0
    neither: int = 0

    @property
    def n(self) -> int:
        return self.both + self.champion_only + self.challenger_only + self.neither

    @classmethod
    def from_arrays(cls, champion_right: np.ndarray, challenger_right: np.ndarray) -> PairedCounts:
        a, b = np.asarray(champion_right, bool), np.asarray(challenger_right, bool)
        return cls(int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum()))


def mcnemar_one_sided_p(challenger_only: ArrayLike, champion_only: ArrayLike) -> np.ndarray:
    """Exact one-sided McNemar p-value that the challenger is better: ``P(X >= b)``, ``X ~ Bin(b + c, 1/2)``.

    Element-wise on arrays; 1.0 without discordant pairs (no evidence either way).
    """
    b, c = np.asarray(challenger_only), np.asarray(champion_only)
    return np.where(b + c > 0, stats.binom.sf(b - 1, b + c, 0.5), 1.0)


def rule(
    melanoma: np.ndarray, other: np.ndarray, days: ArrayLike, settings: ABSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decision rule on many paired tables at once (the simulation's and :func:`decide`'s one rule).

    Args:
        melanoma: (R, 4) paired counts of confirmed melanomas, columns as :class:`PairedCounts`.
        other: (R, 4) paired counts of confirmed non-melanomas.
        days: days of shadowing, scalar or (R,).
        settings: the thresholds.

    Returns:
        ``(verdict, p_value, specificity_difference_lower_bound)``, each (R,); the verdict is a string array.
    """
    m, o = np.atleast_2d(melanoma), np.atleast_2d(other)
    p = mcnemar_one_sided_p(m[:, 2], m[:, 1])
    _, lo, _ = paired_difference_bounds(o[:, 0], o[:, 2], o[:, 1], o[:, 3], settings.confidence)
    stop = (m.sum(1) >= settings.min_melanomas) | (np.asarray(days) >= settings.max_days)
    promote = (p < settings.alpha) & (np.nan_to_num(lo, nan=-np.inf) > -settings.margin)
    return np.where(stop, np.where(promote, PROMOTE, KEEP), CONTINUE), p, lo


@dataclass
class ABDecision:
    """The verdict and its evidence."""

    verdict: str
    reasons: list[str]
    melanoma: PairedCounts
    other: PairedCounts
    days: float
    p_value: float
    sensitivity: dict[str, Any]
    specificity: dict[str, Any]
    stop_rule: dict[str, Any]
    settings: ABSettings = field(default_factory=ABSettings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "stop_rule": self.stop_rule,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "pairs": {"melanoma": asdict(self.melanoma), "other": asdict(self.other)},
            "settings": asdict(self.settings),
        }


def _rate(right: int, n: int, what: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty arm is reported as null, and the verdict says why
        return wilson_estimate(right, n, what=what).to_dict()


def decide(melanoma: PairedCounts, other: PairedCounts, days: float, settings: ABSettings | None = None) -> ABDecision:
    """The verdict on paired counts after ``days`` of shadowing (the pure rule; see the module docstring)."""
    s = settings or ABSettings()
    m, o = melanoma, other
    verdicts, p_values, _ = rule(np.array([astuple(m)]), np.array([astuple(o)]), days, s)
    verdict, p = str(verdicts[0]), float(p_values[0])
    better = p < s.alpha
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no non-melanoma yet: the difference is null and the verdict says why
        diff = paired_difference_interval(o.both, o.challenger_only, o.champion_only, o.neither, s.confidence)
    non_inferior = not math.isnan(diff.lo) and diff.lo > -s.margin
    sensitivity = {
        "champion": _rate(m.both + m.champion_only, m.n, "champion sensitivity"),
        "challenger": _rate(m.both + m.challenger_only, m.n, "challenger sensitivity"),
        "discordant": {"challenger_only": m.challenger_only, "champion_only": m.champion_only},
        "test": "exact one-sided McNemar (binomial on the discordant melanoma pairs)",
        "p_value": p,
        "alpha": s.alpha,
        "significant": better,
    }
    specificity = {
        "champion": _rate(o.both + o.champion_only, o.n, "champion specificity"),
        "challenger": _rate(o.both + o.challenger_only, o.n, "challenger specificity"),
        "difference": diff.to_dict(),
        "margin": s.margin,
        "test": f"non-inferiority: lower end of the {s.confidence:.0%} Newcombe interval > -{s.margin:g}",
        "non_inferior": non_inferior,
    }
    stop_rule = {
        "melanomas": m.n,
        "min_melanomas": s.min_melanomas,
        "days": round(days, 2),
        "max_days": s.max_days,
        "met": verdict != CONTINUE,
    }
    sens_txt = (
        f"melanoma sensitivity: challenger found {m.challenger_only} melanoma(s) the champion missed and missed "
        f"{m.champion_only} it found (one-sided p = {p:.4f}, {'<' if better else 'not <'} {s.alpha})"
    )
    lo = "undefined" if math.isnan(diff.lo) else f"{100 * diff.lo:+.1f}"
    spec_txt = (
        f"specificity difference {100 * diff.value:+.1f} points, lower bound {lo} "
        f"({'above' if non_inferior else 'not above'} -{100 * s.margin:g})"
        if not math.isnan(diff.value)
        else "specificity: no confirmed non-melanoma yet"
    )
    reasons = [sens_txt, spec_txt]
    if verdict == CONTINUE:
        reasons.insert(
            0, f"stop rule not met: {m.n} of {s.min_melanomas} confirmed melanomas, day {days:.1f} of {s.max_days:g}"
        )
    return ABDecision(verdict, reasons, m, o, days, p, sensitivity, specificity, stop_rule, s)


# ------------------------------------------------------------------------------------------- from the store


@dataclass
class ShadowCases:
    """The confirmed shadow pairs of one champion and one challenger."""

    champion: str
    challenger: str
    champion_flag: np.ndarray  # (N,) bool
    challenger_flag: np.ndarray  # (N,) bool
    is_melanoma: np.ndarray  # (N,) bool
    sources: dict[str, int]
    start: dt.datetime
    n_shadowed: int

    def counts(self) -> tuple[PairedCounts, PairedCounts]:
        mel = self.is_melanoma
        return (
            PairedCounts.from_arrays(self.champion_flag[mel], self.challenger_flag[mel]),
            PairedCounts.from_arrays(~self.champion_flag[~mel], ~self.challenger_flag[~mel]),
        )


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def load_shadow_cases(session: Any, challenger: str | None = None, champion: str | None = None) -> ShadowCases:
    """The confirmed pairs of ``challenger`` (default: the newest shadowed version) against its champion.

    Raises:
        NoShadowDataError: no shadow predictions (for that version).
    """
    from dermascan.store import feedback, predictions

    challenger = challenger or predictions.latest_version(session, "shadow")
    if challenger is None:
        raise NoShadowDataError(
            "no shadow predictions in the store: serve the challenger with --challenger BUNDLE --shadow-share 0.1"
        )
    pairs = predictions.shadow_pairs(session, challenger, champion)
    if not pairs:
        raise NoShadowDataError(f"no shadow predictions of challenger {challenger!r} (against {champion or 'any'})")
    versions = {a.model_version for a, _ in pairs}
    if champion is None and len(versions) > 1:
        champion = pairs[-1][0].model_version  # the champion now in service; older ones are another test
        pairs = [(a, b) for a, b in pairs if a.model_version == champion]
    labels = feedback.confirmed_labels(session, [a.id for a, _ in pairs])
    confirmed = [(a, b, labels[a.id]) for a, b in pairs if a.id in labels]
    sources: dict[str, int] = {}
    for *_, (_, source) in confirmed:
        sources[source] = sources.get(source, 0) + 1
    return ShadowCases(
        champion=champion or pairs[0][0].model_version,
        challenger=challenger,
        champion_flag=np.array([a.melanoma_flag for a, _, _ in confirmed], bool),
        challenger_flag=np.array([b.melanoma_flag for _, b, _ in confirmed], bool),
        is_melanoma=np.array([lab == MELANOMA for *_, (lab, _) in confirmed], bool),
        sources=sources,
        start=_utc(pairs[0][1].created_at),
        n_shadowed=len(pairs),
    )


def run_abtest(
    db_url: str,
    out: str | os.PathLike[str] | None = None,
    settings: ABSettings | None = None,
    challenger: str | None = None,
    champion: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Decide from the store at ``db_url``; with ``out``, write ``abtest.json``, ``abtest.html`` and the plot.

    Returns:
        The report (as in ``abtest.json``).
    """
    from dermascan.store import check_schema, make_engine, session_factory

    engine = make_engine(db_url)
    try:
        check_schema(engine)
        with session_factory(engine)() as session:
            cases = load_shadow_cases(session, challenger, champion)
    finally:
        engine.dispose()
    now = _utc(now or dt.datetime.now(dt.UTC))
    days = max(0.0, (now - cases.start).total_seconds() / 86400)
    decision = decide(*cases.counts(), days, settings)
    report = {
        **decision.to_dict(),
        "champion": cases.champion,
        "challenger": cases.challenger,
        "period": {"start": cases.start.isoformat(timespec="seconds"), "as_of": now.isoformat(timespec="seconds")},
        "cases": {
            "shadowed": cases.n_shadowed,
            "confirmed": len(cases.is_melanoma),
            "label_sources": cases.sources,
        },
    }
    if out is not None:
        write_report(Path(out), report)
    return report


# ------------------------------------------------------------------------------------------------- report


def _plot(report: dict[str, Any], path: Path) -> None:
    from dermascan.evaluation.plots import _new_figure, _save

    fig = _new_figure(6.5, 3.0)
    for k, (key, label) in enumerate((("sensitivity", "melanoma sensitivity"), ("specificity", "specificity"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for j, who in enumerate(("champion", "challenger")):
            est = report[key][who]
            if est["value"] is None:
                continue
            err = [[est["value"] - est["lo"]], [est["hi"] - est["value"]]]
            ax.errorbar([j], [est["value"]], yerr=err, fmt="o", capsize=6, color=("#4c72b0", "#dd8452")[j])
        ax.set_xticks([0, 1], ["champion", "challenger"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """``abtest.json``, ``abtest.png`` and ``abtest.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    _io.write_json(out / "abtest.json", report)
    _plot(report, out / "abtest.png")
    sens, spec, stop = report["sensitivity"], report["specificity"], report["stop_rule"]

    def est(e: dict[str, Any]) -> str:
        return "—" if e["value"] is None else f"{e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}] (n={e['n']})"

    rows = [
        ("melanoma sensitivity", est(sens["champion"]), est(sens["challenger"]), f"p = {sens['p_value']:.4f}"),
        ("specificity", est(spec["champion"]), est(spec["challenger"]), f"difference {est(spec['difference'])}"),
    ]
    sections = [
        _html.Section(
            "Verdict",
            _html.paragraph(f"{report['verdict'].upper()}: {report['challenger']} against {report['champion']}")
            + "".join(_html.paragraph(r) for r in report["reasons"]),
        ),
        _html.Section(
            "Evidence",
            _html.table(("figure", "champion", "challenger", "test"), rows) + _html.image("abtest.png", "A/B figures"),
        ),
        _html.Section(
            "Stop rule",
            _html.table(
                ("confirmed melanomas", "needed", "days", "at most", "met"),
                [(stop["melanomas"], stop["min_melanomas"], stop["days"], stop["max_days"], stop["met"])],
            )
            + _html.paragraph(
                f"{report['cases']['confirmed']} of {report['cases']['shadowed']} shadowed cases confirmed "
                f"({report['cases']['label_sources']}); period from {report['period']['start']}."
            ),
        ),
        _html.Section("Method", _html.paragraph(sens["test"] + "; " + spec["test"] + ".")),
    ]
    return _html.write_page(out / "abtest.html", "Shadow A/B decision", sections, subtitle=report["verdict"])


__all__ = [
    "CONTINUE",
    "KEEP",
    "PROMOTE",
    "ABDecision",
    "ABSettings",
    "NoShadowDataError",
    "PairedCounts",
    "ShadowCases",
    "decide",
    "load_shadow_cases",
    "mcnemar_one_sided_p",
    "rule",
    "run_abtest",
    "write_report",
]
