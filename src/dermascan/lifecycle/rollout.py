"""The staged rollout (brief 4.7): the challenger's canary share goes 10% -> 50% -> 100% over 72 hours, each step
recorded in the store with who, why, when and the live figures it rested on.

The service already answers the canary share of requests with the challenger and re-reads the share from the store
without a restart (:mod:`dermascan.serving.rollout`); this module only moves that share
(:func:`dermascan.store.rollout.set_share`) and keeps the rollout's state and history (``rollouts``,
``rollout_steps``).

A step forward needs the canary's live figures, from the ``predictions`` table since the stage began, to hold
against the champion's since the rollout began:

* **p95 latency**: the canary's at most ``latency_ratio`` x the champion's plus ``latency_slack_ms``;
* **melanoma-flag rate**: not different from the champion's by more than ``flag_rate_tolerance`` *and*
  significantly so (two-sided Fisher exact test, ``flag_alpha``), so that a small stage does not flap;
* **error rate**: the service stores answered images only, so a failed answer leaves no row; pass an
  ``error_counts`` hook (``(version, since) -> (errors, requests)``, e.g. from the load balancer's logs) to check it.
  Without one the check is reported as not measured and does not block;
* **no drift alert**: ``drift_check`` (``(version, since) -> alert text or None``); :func:`monitor_drift_check`
  reads the report of ``dermascan monitor`` (``--monitor M`` on the commands): any input, embedding or prediction
  drift alert in a window since the stage began is a breach. Without a check there is none, and the step's
  evidence says so.

Too few canary answers (``min_canary_cases``) or too little time at the stage (``stage_hours``) hold the rollout;
a breach of any check rolls it back to the champion at once (share 0), by :func:`advance` and by :func:`check`
(which a scheduler can run every few minutes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermascan.errors import ConfigError, DermaScanError

#: Hooks: ``(model version, since) -> alert text or None`` and ``(model version, since) -> (errors, requests)``.
DriftCheck = Callable[[str, dt.datetime], str | None]
ErrorCounts = Callable[[str, dt.datetime], tuple[int, int] | None]

OK, HOLD, BREACH, UNMEASURED = "ok", "hold", "breach", "not measured"


class RolloutError(DermaScanError, ValueError):
    """A rollout command that does not fit the rollout's state (none active, another model), with the fix."""


def monitor_drift_check(monitor_dir: str | os.PathLike[str]) -> DriftCheck:
    """A drift check on the report ``dermascan monitor --out monitor_dir`` wrote: the drift alerts (input, embedding,
    prediction) of the windows that end after the stage began.

    The report must cover the stage: one that is missing or ends before the stage began raises
    :class:`RolloutError` (run the monitor first) instead of passing a step it says nothing about.
    """
    from dermascan.monitoring.files import DRIFT_ALERTS, JSON_FILE

    path = Path(monitor_dir) / JSON_FILE

    def check(version: str, since: dt.datetime) -> str | None:
        if not path.is_file():
            raise RolloutError(
                f"no monitor report at {path}: run `dermascan monitor --db URL --bundle B --out {monitor_dir}` "
                "before a rollout step"
            )
        report = json.loads(path.read_text())
        since_utc = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
        until = dt.datetime.fromisoformat(report["period"]["until"])
        if (until if until.tzinfo else until.replace(tzinfo=dt.UTC)) <= since_utc:
            raise RolloutError(
                f"the monitor report {path} ends at {until:%Y-%m-%d %H:%M}, before this stage began "
                f"({since_utc:%Y-%m-%d %H:%M}): run `dermascan monitor` again"
            )
        hits = []
        for w in report["windows"]:
            end = dt.datetime.fromisoformat(w["end"])
            if (end if end.tzinfo else end.replace(tzinfo=dt.UTC)) > since_utc:
                hits += [f"{a} in the window from {w['start']}" for a in w["alerts"] if a in DRIFT_ALERTS]
        return "drift alert(s) since this stage began: " + "; ".join(hits[:5]) if hits else None

    return check


@dataclass(frozen=True)
class RolloutPolicy:
    """How a rollout moves and what holds it.

    Attributes:
        stages: the canary shares, in order (the brief's 10% -> 50% -> 100%).
        stage_hours: the least time at a stage before the next (36 h: 100% at 72 h).
        min_canary_cases: the fewest canary answers at a stage before it may advance.
        latency_ratio: the canary's p95 latency may be at most this multiple of the champion's ...
        latency_slack_ms: ... plus this many milliseconds.
        flag_rate_tolerance: the largest melanoma-flag-rate difference from the champion's (absolute).
        flag_alpha: a flag-rate difference breaches only when significant at this level.
        max_error_rate: the largest canary error rate (when an ``error_counts`` hook measures it).
    """

    stages: tuple[float, ...] = (0.10, 0.50, 1.00)
    stage_hours: float = 36.0
    min_canary_cases: int = 100
    latency_ratio: float = 1.2
    latency_slack_ms: float = 50.0
    flag_rate_tolerance: float = 0.05
    flag_alpha: float = 0.01
    max_error_rate: float = 0.01

    def __post_init__(self) -> None:
        s = self.stages
        if not s or any(not 0 < x <= 1 for x in s) or list(s) != sorted(set(s)) or s[-1] != 1.0:
            raise ConfigError(f"stages must rise within (0, 1] and end at 1.0, e.g. (0.1, 0.5, 1.0); got {s}")
        if self.stage_hours < 0 or self.min_canary_cases < 1:
            raise ConfigError("stage_hours must be >= 0 and min_canary_cases >= 1")


@dataclass
class Check:
    """One live figure of the canary against the champion's."""

    name: str
    status: str  # ok / hold / breach / not measured
    canary: float | None
    champion: float | None
    detail: str


@dataclass
class Evaluation:
    """The checks of the rollout's current stage and what they allow."""

    status: str  # ok / hold / breach
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [asdict(c) for c in self.checks]}

    def summary(self) -> str:
        bad = [c for c in self.checks if c.status in (BREACH, HOLD)]
        return "; ".join(f"{c.name}: {c.detail}" for c in bad) or "all live figures hold"


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def _p95(latencies: list[float]) -> float | None:
    return float(np.percentile(latencies, 95)) if latencies else None


def evaluate(
    canary: list[tuple[float, bool]],
    champion: list[tuple[float, bool]],
    hours_at_stage: float,
    policy: RolloutPolicy,
    drift_alert: str | None = None,
    drift_checked: bool = False,
    errors: tuple[int, int] | None = None,
) -> Evaluation:
    """The checks on ``(latency_ms, melanoma_flag)`` answers of the canary (this stage) and the champion."""
    from scipy.stats import fisher_exact

    checks: list[Check] = []
    n_c, n_p = len(canary), len(champion)
    enough = n_c >= policy.min_canary_cases
    checks.append(
        Check(
            "canary answers",
            OK if enough else HOLD,
            float(n_c),
            float(n_p),
            f"{n_c} canary answers at this stage (need {policy.min_canary_cases})",
        )
    )
    dwell = hours_at_stage >= policy.stage_hours
    checks.append(
        Check(
            "time at stage",
            OK if dwell else HOLD,
            hours_at_stage,
            None,
            f"{hours_at_stage:.1f} h at this stage (need {policy.stage_hours:g} h)",
        )
    )
    p95_c, p95_p = _p95([a for a, _ in canary]), _p95([a for a, _ in champion])
    if p95_c is None or p95_p is None:
        checks.append(Check("p95 latency", HOLD, p95_c, p95_p, "no answers to compare yet"))
    else:
        bound = p95_p * policy.latency_ratio + policy.latency_slack_ms
        ok = p95_c <= bound
        checks.append(
            Check(
                "p95 latency",
                OK if ok else BREACH,
                p95_c,
                p95_p,
                f"canary {p95_c:.0f} ms against a bound of {bound:.0f} ms (champion {p95_p:.0f} ms)",
            )
        )
    if n_c and n_p:
        f_c, f_p = sum(f for _, f in canary), sum(f for _, f in champion)
        r_c, r_p = f_c / n_c, f_p / n_p
        p = float(fisher_exact([[f_c, n_c - f_c], [f_p, n_p - f_p]])[1])
        breach = abs(r_c - r_p) > policy.flag_rate_tolerance and p < policy.flag_alpha
        checks.append(
            Check(
                "melanoma-flag rate",
                BREACH if breach else OK,
                r_c,
                r_p,
                f"canary {r_c:.1%} against champion {r_p:.1%} (tolerance {policy.flag_rate_tolerance:.0%}, "
                f"Fisher p = {p:.3g})",
            )
        )
    else:
        checks.append(Check("melanoma-flag rate", HOLD, None, None, "no answers to compare yet"))
    if errors is None:
        checks.append(
            Check("error rate", UNMEASURED, None, None, "no error_counts hook: the store keeps answered images only")
        )
    else:
        failed, total = errors
        rate = failed / total if total else 0.0
        ok = rate <= policy.max_error_rate
        checks.append(
            Check(
                "error rate",
                OK if ok else BREACH,
                rate,
                None,
                f"{failed} of {total} canary requests failed (at most {policy.max_error_rate:.1%})",
            )
        )
    if not drift_checked:
        checks.append(Check("drift alert", UNMEASURED, None, None, "no drift check configured"))
    else:
        checks.append(Check("drift alert", BREACH if drift_alert else OK, None, None, drift_alert or "no drift alert"))
    statuses = {c.status for c in checks}
    status = BREACH if BREACH in statuses else HOLD if HOLD in statuses else OK
    return Evaluation(status, checks)


# ------------------------------------------------------------------------------------------------ commands


@contextlib.contextmanager
def _session(db_url: str, write: bool = True) -> Iterator[Any]:
    """One session on a migrated store (one transaction when ``write``); the engine is closed after."""
    from dermascan.store import check_schema, make_engine, session_factory, transaction

    engine = make_engine(db_url)
    try:
        check_schema(engine)
        sessions = session_factory(engine)
        with transaction(sessions) if write else sessions() as session:
            yield session
    finally:
        engine.dispose()


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _row_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "model_version": r.model_version,
        "champion_version": r.champion_version,
        "status": r.status,
        "stage": r.stage,
        "share": r.share,
        "started_at": _utc(r.started_at).isoformat(timespec="seconds"),
        "stage_started_at": _utc(r.stage_started_at).isoformat(timespec="seconds"),
    }


def _step_dict(s: Any) -> dict[str, Any]:
    return {
        "at": _utc(s.created_at).isoformat(timespec="seconds"),
        "action": s.action,
        "from_share": s.from_share,
        "to_share": s.to_share,
        "who": s.actor,
        "why": s.reason,
    }


def _require(session: Any, model: str | None) -> Any:
    from dermascan.store import rollout as stored

    row = stored.active(session)
    if row is None:
        last = stored.latest(session, model)
        state = f"; the last one, of {last.model_version}, is {last.status}" if last is not None else ""
        raise RolloutError(f"no rollout is active{state}: start one with `dermascan rollout start --model VERSION`")
    if model is not None and row.model_version != model:
        raise RolloutError(
            f"the active rollout is of {row.model_version}, not {model}: pass --model {row.model_version}"
        )
    return row


def start(
    db_url: str,
    model: str,
    champion: str | None = None,
    actor: str | None = None,
    reason: str = "",
    policy: RolloutPolicy | None = None,
) -> dict[str, Any]:
    """Start rolling out ``model`` (the service's challenger) at the first stage's share.

    Raises:
        RolloutError: another rollout is active.
    """
    from dermascan.store import predictions
    from dermascan.store import rollout as stored

    policy = policy or RolloutPolicy()
    with _session(db_url) as session:
        champion = champion or predictions.latest_version(session, "primary")
        previous = stored.get_share(session) or 0.0
        try:
            row = stored.create(session, model, champion, policy.stages[0])
        except ValueError as e:
            raise RolloutError(str(e)) from e
        stored.set_share(session, policy.stages[0])
        why = reason or "rollout started"
        stored.add_step(session, row, "start", previous, policy.stages[0], _actor(actor), why, asdict(policy))
        return {"rollout": _row_dict(row), "action": "start"}


def _measure(
    session: Any,
    row: Any,
    policy: RolloutPolicy,
    now: dt.datetime,
    drift_check: DriftCheck | None,
    error_counts: ErrorCounts | None,
) -> Evaluation:
    from dermascan.store import predictions

    since = _utc(row.stage_started_at)
    canary = predictions.answers_since(session, "canary", since, row.model_version)
    champion = predictions.answers_since(session, "primary", _utc(row.started_at), row.champion_version)
    hours = (now - since).total_seconds() / 3600
    alert = drift_check(row.model_version, since) if drift_check is not None else None
    errors = error_counts(row.model_version, since) if error_counts is not None else None
    return evaluate(canary, champion, hours, policy, alert, drift_check is not None, errors)


def _roll_back(session: Any, row: Any, actor: str, reason: str, evidence: dict[str, Any] | None) -> None:
    from dermascan.store import rollout as stored
    from dermascan.store.models import utcnow

    before = row.share
    stored.set_share(session, 0.0)
    row.status, row.stage, row.share, row.updated_at = "rolled_back", -1, 0.0, utcnow()
    stored.add_step(session, row, "rollback", before, 0.0, actor, reason, evidence)


def advance(
    db_url: str,
    model: str | None = None,
    actor: str | None = None,
    reason: str = "",
    policy: RolloutPolicy | None = None,
    drift_check: DriftCheck | None = None,
    error_counts: ErrorCounts | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One step forward if the live figures hold: the next stage's share, or ``completed`` after the last stage.

    Holds (records a ``hold`` step, share unchanged) on too little evidence or time; rolls back at once on a breach.

    Returns:
        ``{"action": advance | complete | hold | rollback, "rollout", "evaluation"}``.
    """
    from dermascan.store import rollout as stored
    from dermascan.store.models import utcnow

    policy = policy or RolloutPolicy()
    now = _utc(now or dt.datetime.now(dt.UTC))
    who = _actor(actor)
    with _session(db_url) as session:
        row = _require(session, model)
        ev = _measure(session, row, policy, now, drift_check, error_counts)
        evidence = ev.to_dict()
        if ev.status == BREACH:
            action = "rollback"
            _roll_back(session, row, who, f"breach: {ev.summary()}", evidence)
        elif ev.status == HOLD:
            action = "hold"
            why = f"held: {ev.summary()}" + (f" ({reason})" if reason else "")
            stored.add_step(session, row, "hold", row.share, row.share, who, why, evidence)
        elif row.stage + 1 >= len(policy.stages):
            action = "complete"
            row.status, row.updated_at = "completed", utcnow()
            why = reason or "the canary held at 100%: promote it to champion in the registry"
            stored.add_step(session, row, "complete", row.share, row.share, who, why, evidence)
        else:
            action = "advance"
            before, after = row.share, policy.stages[row.stage + 1]
            stored.set_share(session, after)
            row.stage, row.share, row.stage_started_at, row.updated_at = row.stage + 1, after, now, utcnow()
            stored.add_step(session, row, "advance", before, after, who, reason or ev.summary(), evidence)
        return {"action": action, "rollout": _row_dict(row), "evaluation": evidence}


def check(
    db_url: str,
    policy: RolloutPolicy | None = None,
    drift_check: DriftCheck | None = None,
    error_counts: ErrorCounts | None = None,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Watch the active rollout once: roll back at once on a breach, else change nothing (for a scheduler)."""
    policy = policy or RolloutPolicy()
    now = _utc(now or dt.datetime.now(dt.UTC))
    with _session(db_url) as session:
        row = _require(session, None)
        ev = _measure(session, row, policy, now, drift_check, error_counts)
        action = "none"
        if ev.status == BREACH:
            action = "rollback"
            _roll_back(session, row, _actor(actor or "rollout-check"), f"breach: {ev.summary()}", ev.to_dict())
        return {"action": action, "rollout": _row_dict(row), "evaluation": ev.to_dict()}


def rollback(db_url: str, model: str | None = None, actor: str | None = None, reason: str = "") -> dict[str, Any]:
    """Roll the active rollout back to the champion (share 0) now."""
    with _session(db_url) as session:
        row = _require(session, model)
        _roll_back(session, row, _actor(actor), reason or "rolled back by hand", None)
        return {"action": "rollback", "rollout": _row_dict(row)}


def status(
    db_url: str,
    policy: RolloutPolicy | None = None,
    drift_check: DriftCheck | None = None,
    error_counts: ErrorCounts | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The active (else the latest) rollout, its step history and, while active, its live checks."""
    from dermascan.store import rollout as stored

    policy = policy or RolloutPolicy()
    now = _utc(now or dt.datetime.now(dt.UTC))
    with _session(db_url, write=False) as session:
        row = stored.active(session) or stored.latest(session)
        if row is None:
            return {"rollout": None, "share": stored.get_share(session), "steps": []}
        out: dict[str, Any] = {
            "rollout": _row_dict(row),
            "share": stored.get_share(session),
            "steps": [_step_dict(s) for s in stored.steps(session, row.id)],
        }
        if row.status == "active":
            out["evaluation"] = _measure(session, row, policy, now, drift_check, error_counts).to_dict()
        return out


__all__ = [
    "BREACH",
    "HOLD",
    "OK",
    "Check",
    "DriftCheck",
    "ErrorCounts",
    "Evaluation",
    "RolloutError",
    "RolloutPolicy",
    "advance",
    "check",
    "evaluate",
    "monitor_drift_check",
    "rollback",
    "start",
    "status",
]
