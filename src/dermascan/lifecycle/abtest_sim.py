"""Operating characteristics of the shadow A/B decision, by simulation (numpy, no models).

Each repeat draws one shadow period's paired tables and applies the decision's own rule
(:func:`dermascan.lifecycle.abtest.rule`, the one that ``dermascan abtest`` runs on the store) at the stop:

* with **no true difference** (same sensitivity and specificity), the share of repeats that promote is the
  false-promotion rate; the exact one-sided test keeps it at or under ``alpha`` (it is conservative: the binomial
  is discrete), and the specificity condition can only lower it;
* with a **true +3 points** of melanoma sensitivity, the share that promotes is the power.

The two models' answers on one case are correlated (two models of one family err on the same hard lesions):
``correlation`` is the phi coefficient of the paired 2x2 table, which fixes the share of discordant pairs for
given marginals. The power depends on it strongly: more agreement means fewer discordant pairs, all of them
informative, and more power.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dermascan.errors import ConfigError
from dermascan.evaluation.intervals import wilson_estimate
from dermascan.lifecycle.abtest import PROMOTE, ABSettings, rule


@dataclass(frozen=True)
class Scenario:
    """The truth of one simulated shadow period.

    Attributes:
        champion_sensitivity: champion's true melanoma sensitivity.
        challenger_sensitivity: challenger's.
        champion_specificity: champion's true specificity.
        challenger_specificity: challenger's.
        correlation: phi correlation of the two models' "right" answers on one case.
        specificity_correlation: the same on non-melanomas (``None``: ``correlation``).
        melanomas: confirmed melanomas when the period stops (the stop rule's 500).
        others_per_melanoma: confirmed non-melanomas per confirmed melanoma (8: HAM10000's mix, 1,113 melanomas
            in 10,015 images; clinician-confirmed benign lesions count as confirmed).
    """

    champion_sensitivity: float = 0.90
    challenger_sensitivity: float = 0.90
    champion_specificity: float = 0.75
    challenger_specificity: float = 0.75
    correlation: float = 0.5
    specificity_correlation: float | None = None
    melanomas: int = 500
    others_per_melanoma: float = 8.0


def paired_cells(p_first: float, p_second: float, correlation: float) -> np.ndarray:
    """Probabilities ``(both, first only, second only, neither)`` of two Bernoulli answers with phi ``correlation``.

    Raises:
        ConfigError: the correlation is impossible for these marginals.
    """
    both = p_first * p_second + correlation * math.sqrt(p_first * (1 - p_first) * p_second * (1 - p_second))
    cells = np.array([both, p_first - both, p_second - both, 1 - p_first - p_second + both])
    if (cells < -1e-12).any():
        raise ConfigError(f"correlation {correlation} is impossible with rates {p_first} and {p_second}")
    return np.clip(cells, 0, None) / np.clip(cells, 0, None).sum()


def _other_cells(scenario: Scenario) -> np.ndarray:
    rho = scenario.correlation if scenario.specificity_correlation is None else scenario.specificity_correlation
    return paired_cells(scenario.champion_specificity, scenario.challenger_specificity, rho)


def promotion_rate(
    scenario: Scenario, repeats: int = 2000, seed: int = 0, settings: ABSettings | None = None
) -> dict[str, object]:
    """Share of ``repeats`` simulated periods that end in ``promote``, with its Wilson interval.

    Cells are in :class:`~dermascan.lifecycle.abtest.PairedCounts` order (both, champion only, challenger only,
    neither); for non-melanomas "right" is "not flagged".
    """
    s = settings or ABSettings()
    rng = np.random.default_rng(seed)
    mel = rng.multinomial(
        scenario.melanomas,
        paired_cells(scenario.champion_sensitivity, scenario.challenger_sensitivity, scenario.correlation),
        size=repeats,
    )  # (R, 4)
    n_other = round(scenario.melanomas * scenario.others_per_melanoma)
    other = rng.multinomial(
        n_other,
        _other_cells(scenario),
        size=repeats,
    )  # (R, 4)
    verdicts, p, _ = rule(mel, other, s.max_days, s)
    promoted = int((verdicts == PROMOTE).sum())
    return {
        "scenario": asdict(scenario),
        "repeats": repeats,
        "promoted": promoted,
        "rate": wilson_estimate(promoted, repeats).to_dict(),
        "sensitivity_significant": float((p < s.alpha).mean()),
    }


def operating_characteristics(
    repeats: int = 2000, seed: int = 0, melanomas: int = 500, gain: float = 0.03, correlation: float = 0.5
) -> dict[str, object]:
    """The false-promotion rate (no true difference) and the power (a true ``gain`` in sensitivity).

    Returns:
        ``{"false_promotion": promotion_rate(...), "power": promotion_rate(...)}``.
    """
    null = Scenario(melanomas=melanomas, correlation=correlation)
    better = Scenario(
        melanomas=melanomas, correlation=correlation, challenger_sensitivity=null.champion_sensitivity + gain
    )
    return {
        "false_promotion": promotion_rate(null, repeats, seed),
        "power": promotion_rate(better, repeats, seed + 1),
    }


def simulated_row(
    pid: str,
    version: str,
    flag: bool,
    role: str = "primary",
    shadow_of: str | None = None,
    *,
    when: dt.datetime,
    clinic: str,
    rng: np.random.Generator,
    **extra: Any,
) -> Any:
    """A plausible ``predictions`` row (melanoma risk high when flagged), for simulated periods; ``extra`` sets
    other columns (``image_uri``, ``lesion_id``, ``patient_hash``). The patient hash is random unless given."""
    import uuid

    from dermascan.store.models import PredictionRow, prob_column
    from dermascan.taxonomy import CLASSES

    p_mel = float(rng.uniform(0.5, 0.95) if flag else rng.uniform(0.0, 0.15))
    rest = (1 - p_mel) / (len(CLASSES) - 1)
    values: dict[str, Any] = {
        "id": pid, "created_at": when, "clinic_id": clinic, "patient_hash": uuid.uuid4().hex * 2,
        "model_version": version, "bundle_digest": "0" * 64, "role": role, "shadow_of": shadow_of,
        **{prob_column(c): (p_mel if c == "MEL" else rest) for c in CLASSES},
        "primary_class": "MEL" if flag else "NV", "melanoma_risk": p_mel, "melanoma_flag": flag, "threshold": 0.3,
        "latency_ms": float(rng.uniform(80, 400)), "width": 640, "height": 480, "brightness": 0.5, "contrast": 0.2,
        "mean_r": 0.6, "mean_g": 0.45, "mean_b": 0.4,
    }  # fmt: skip
    return PredictionRow(**{**values, **extra})


def write_shadow_period(
    db_url: str,
    scenario: Scenario,
    days: float = 7.0,
    start: dt.datetime | None = None,
    champion: str = "champion-v1",
    challenger: str = "challenger-v2",
    seed: int = 0,
) -> dict[str, int]:
    """Write a simulated shadow period into the store at ``db_url``: the champion's answer and the challenger's
    shadow answer of every case (``shadow_of`` linked), spread over ``days``, each confirmed by feedback
    (histopathology for melanomas and a third of the others, the clinician for the rest). For the demo and tests.

    No patient identifier is written: the patient hashes are random.

    Returns:
        ``{"cases", "melanomas"}`` written.
    """
    import uuid

    from dermascan.store import db, feedback, predictions
    from dermascan.store.models import Clinic
    from dermascan.taxonomy import CLASSES

    rng = np.random.default_rng(seed)
    n_other = round(scenario.melanomas * scenario.others_per_melanoma)
    truth = rng.permutation(np.r_[np.ones(scenario.melanomas, bool), np.zeros(n_other, bool)])
    mel_cells = paired_cells(scenario.champion_sensitivity, scenario.challenger_sensitivity, scenario.correlation)
    oth_cells = _other_cells(scenario)
    # cell -> (champion right, challenger right), in PairedCounts order
    right = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool)
    cell = np.where(truth, rng.choice(4, len(truth), p=mel_cells), rng.choice(4, len(truth), p=oth_cells))
    flags = np.where(truth[:, None], right[cell], ~right[cell])  # (N, 2): melanoma flag of champion, challenger
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    offsets = np.sort(rng.uniform(0, days * 86400, len(truth)))
    others = [c for c in CLASSES if c != "MEL"]

    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        with db.transaction(db.session_factory(engine)) as session:
            clinic = "shadow-sim"
            if session.get(Clinic, clinic) is None:
                session.add(Clinic(id=clinic, name="Shadow sim"))
                session.flush()
            for k, (is_mel, (f_champ, f_chall), off) in enumerate(zip(truth, flags, offsets, strict=True)):
                when = start + dt.timedelta(seconds=float(off))
                champ_id, shadow_id = str(uuid.uuid4()), str(uuid.uuid4())
                common = {"when": when, "clinic": clinic, "rng": rng}
                predictions.add(session, simulated_row(champ_id, champion, bool(f_champ), **common))
                predictions.add(
                    session, simulated_row(shadow_id, challenger, bool(f_chall), "shadow", champ_id, **common)
                )
                label = "MEL" if is_mel else str(rng.choice(others))
                histo = is_mel or k % 3 == 0
                feedback.append(
                    session, champ_id, None if histo else label, label if histo else None, None,
                    "histopathology" if histo else "clinician",
                )  # fmt: skip
    finally:
        engine.dispose()
    return {"cases": len(truth), "melanomas": int(truth.sum())}


__all__ = [
    "Scenario",
    "operating_characteristics",
    "paired_cells",
    "promotion_rate",
    "simulated_row",
    "write_shadow_period",
]
