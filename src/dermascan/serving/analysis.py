"""Analyse images for a clinic and store every answer in the transaction that answers.

Each image: checked and decoded (:mod:`~dermascan.serving.images`) -> one inference call for all images of the
request (:class:`~dermascan.serving.engine.InferenceEngine`) -> attention map -> one transaction with every
prediction row and the access-log entry. If that transaction fails, the client gets 503 and nothing was
stored (a kept image is removed again): never an answer without its row.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from dermascan.inference import Prediction
from dermascan.serving.errors import ServiceError, store_unavailable
from dermascan.serving.images import CheckedImage, check_image
from dermascan.serving.schemas import AnalyzeResponse, Diagnosis
from dermascan.serving.state import ServiceState
from dermascan.store import access, predictions
from dermascan.store.clinics import Caller
from dermascan.store.db import transaction
from dermascan.store.models import PredictionRow, prob_column
from dermascan.taxonomy import API_NAMES

log = logging.getLogger("dermascan.serving")


@dataclass
class Intake:
    """One image of a request: its bytes (or why they could not be read) and the lesion fields."""

    field: str
    data: bytes | None
    error: ServiceError | None = None
    lesion_id: str | None = None
    body_site: str | None = None


@dataclass
class _Answered:
    intake: Intake
    image: CheckedImage
    pred: Prediction
    attention_map: str | None
    pid: str = ""
    role: str = "primary"  # primary (the champion answered) or canary (the challenger did)
    row: PredictionRow | None = None


def check_clinic(caller: Caller, clinic_id: str) -> None:
    if clinic_id != caller.clinic_id:
        raise ServiceError(
            403,
            "forbidden_clinic",
            f"this API key belongs to clinic {caller.clinic_id!r}, not {clinic_id!r}; use that clinic's own key",
        )


async def analyze(
    state: ServiceState,
    caller: Caller,
    patient_id: str,
    intakes: list[Intake],
    t0: float,
    timings: dict[str, float] | None = None,
) -> list[AnalyzeResponse | ServiceError]:
    """Answer and store each image; a bad image gets its error in its place.

    ``timings`` (when given) gets each step's milliseconds (``parse``, ``check``, ``model``, ``render``, ``store``): the
    middleware returns them as the ``Server-Timing`` header.

    Raises:
        ServiceError: 503 when the store write fails (then nothing is stored).
    """
    assert state.engine is not None
    limits, draft = state.limits, state.engine.draft

    def check(item: Intake) -> CheckedImage | ServiceError:
        if item.error is not None:
            return item.error
        try:
            assert item.data is not None
            checked = check_image(item.data, limits, field=item.field, draft=draft)
            assert checked is not None
            return checked
        except ServiceError as e:
            return e

    timings = {} if timings is None else timings
    mark = time.perf_counter()
    timings["parse"] = (mark - t0) * 1e3  # the body read, its JSON and base64
    checked = await run_in_threadpool(lambda: [check(i) for i in intakes])
    timings["check"] = (time.perf_counter() - mark) * 1e3
    good = [(i, c) for i, c in zip(intakes, checked, strict=True) if isinstance(c, CheckedImage)]
    outcome: dict[int, _Answered | ServiceError] = {
        id(i): c for i, c in zip(intakes, checked, strict=True) if isinstance(c, ServiceError)
    }
    if good:
        rollout = state.rollout
        if rollout is not None and rollout.stale():
            await run_in_threadpool(rollout.refresh)
        # the prediction id is drawn first: it decides (by its hash) which model answers
        pids = [str(uuid.uuid4()) for _ in good]
        canary = [rollout is not None and rollout.is_canary(pid) for pid in pids]
        answered: list[_Answered | ServiceError | None] = [None] * len(good)
        mark = time.perf_counter()

        async def answer() -> None:
            for is_canary in (False, True):
                idx = [j for j, c in enumerate(canary) if c == is_canary]
                if not idx:
                    continue
                part = [good[j] for j in idx]
                results = await state.engine.predict([c.rgb for _, c in part], state.heatmap, challenger=is_canary)
                for j, a in zip(idx, _answers(part, results), strict=True):
                    if isinstance(a, _Answered):
                        a.pid, a.role = pids[j], "canary" if is_canary else "primary"
                    answered[j] = a
            timings["model"] = (time.perf_counter() - mark) * 1e3  # the queue and the forward pass

        # The drift features need only the decoded image: computed in a worker thread beside the forward pass,
        # ready for the store write instead of on the answer's path after it.
        await asyncio.gather(answer(), run_in_threadpool(lambda: [c.stats for _, c in good]))
        for (item, _), a in zip(good, answered, strict=True):
            assert a is not None
            outcome[id(item)] = a
        stored = [a for a in answered if isinstance(a, _Answered)]
        if stored:
            ms = (time.perf_counter() - t0) * 1e3  # to the decision: the map's PNG is drawn beside the write
            # Independent, and both release the GIL (zlib, the database driver): side by side, not one after the
            # other. A failed write still answers 503 and nothing is stored.
            await asyncio.gather(
                run_in_threadpool(_timed, timings, "render", _render, state, stored),
                run_in_threadpool(_timed, timings, "store", _store, state, caller, patient_id, stored, ms),
            )
            _shadow(state, caller, patient_id, [a for a in stored if a.role == "primary"])
    latency = round((time.perf_counter() - t0) * 1e3)
    return [_response(state, o, latency) if isinstance(o := outcome[id(i)], _Answered) else o for i in intakes]


def _timed(timings: dict[str, float], name: str, fn: Callable[..., None], *args: object) -> None:
    mark = time.perf_counter()
    try:
        fn(*args)
    finally:
        timings[name] = (time.perf_counter() - mark) * 1e3


def _shadow(state: ServiceState, caller: Caller, patient_id: str, answered: list[_Answered]) -> None:
    """Run the challenger on the shadowed share of the champion's answers, after the response; store its
    answers as ``shadow`` rows linked to the champion's (never shown to anyone through the API)."""
    rollout, engine = state.rollout, state.engine
    chosen = [a for a in answered if rollout is not None and rollout.is_shadowed(a.pid)]
    if not chosen or engine is None:
        return

    async def job() -> None:
        t0 = time.perf_counter()
        results = await engine.predict([a.image.rgb for a in chosen], heatmap=False, challenger=True)
        ms = (time.perf_counter() - t0) * 1e3
        shadows = []
        for a, pred in zip(chosen, results, strict=True):
            if isinstance(pred, Prediction):
                shadows.append(_Answered(a.intake, a.image, pred, None, str(uuid.uuid4()), "shadow"))
                shadows[-1].row = a.row  # the champion's row, for the link
        if shadows:
            await run_in_threadpool(_store, state, caller, patient_id, shadows, ms)

    engine.in_background(job)


def attention_map(pred: Prediction, alpha: float, max_side: int, format: str) -> str:
    """The heat-map overlay as base64 ``format`` (``jpeg`` or ``png``), at most ``max_side`` px a side (0: the
    image's size).

    The image and its heat map are downscaled *before* blending: blending a 12 M pixel capture at full size and
    then shrinking it costs seconds. JPEG by default: ~1 ms and ~30 KB for a 512 px overlay against ~7 ms and
    ~220 KB as PNG (see :func:`~dermascan.explain.render.encode_image`).
    """
    return pred.overlay_base64(alpha, max_side, format)


def _answers(good: list[tuple[Intake, CheckedImage]], results: list) -> list[_Answered | ServiceError]:
    out: list[_Answered | ServiceError] = []
    for (item, image), pred in zip(good, results, strict=True):
        if not isinstance(pred, Prediction):  # the Predictor's own checks (e.g. its smallest side)
            out.append(ServiceError(422, "unreadable_image", f"{item.field}: {pred.error.split(': ', 1)[-1]}"))
        else:
            out.append(_Answered(item, image, pred, None))
    return out


def _render(state: ServiceState, answered: list[_Answered]) -> None:
    """Draw each answer's heat-map overlay as base64 PNG, then free the arrays (the answer holds the PNG)."""
    s = state.settings
    for a in answered:
        if state.heatmap:
            a.attention_map = attention_map(a.pred, s.heatmap_alpha, s.attention_map_max_side, s.attention_map_format)
        a.pred.release_images()


def _store(state: ServiceState, caller: Caller, patient_id: str, answered: list[_Answered], latency_ms: float) -> None:
    assert state.sessions is not None
    patient_hash = state.hasher(patient_id)
    kept: list[str] = []
    try:
        with transaction(state.sessions) as session:
            for a in answered:
                pid = a.pid or str(uuid.uuid4())
                uri = None
                if state.keeper is not None and a.role != "shadow":
                    uri = state.keeper.put(caller.clinic_id, pid, a.image.data, a.image.ext)
                    kept.append(uri)
                p = a.pred
                on_challenger = a.role != "primary"
                shadow_of = a.row.id if a.role == "shadow" and a.row is not None else None
                a.row = predictions.add(
                    session,
                    PredictionRow(
                        id=pid,
                        clinic_id=caller.clinic_id,
                        patient_hash=patient_hash,
                        lesion_id=a.intake.lesion_id,
                        body_site=a.intake.body_site,
                        model_version=p.model_version,
                        bundle_digest=state.challenger_digest if on_challenger else state.bundle_digest,
                        role=a.role,
                        shadow_of=shadow_of,
                        shadow_share=None if state.rollout is None else state.rollout.shadow_share,
                        canary_share=None if state.rollout is None else state.rollout.canary_share,
                        **{prob_column(c): v for c, v in p.probabilities.items()},
                        primary_class=p.primary,
                        melanoma_risk=p.melanoma_risk,
                        melanoma_flag=p.melanoma_flag,
                        risk_band=p.risk_band,
                        threshold=p.threshold,
                        latency_ms=latency_ms,
                        image_uri=uri,
                        embedding=p.embedding_list(),
                        **a.image.stats,
                    ),
                )
            if answered[0].role == "shadow":
                return  # the challenger's rows: no clinic read or wrote anything
            access.record(
                session,
                caller,
                "analyze",
                answered[0].row.id if len(answered) == 1 else None,  # type: ignore[union-attr]
                {"predictions": [a.row.id for a in answered]} if len(answered) > 1 else None,
            )  # type: ignore[union-attr]
    except (SQLAlchemyError, OSError) as e:
        log.error("store write failed (%s): answering 503, nothing stored", type(e).__name__)
        for uri in kept:
            state.keeper.remove(uri)  # type: ignore[union-attr]
        raise store_unavailable() from e
    for a in answered:
        if a.role == "shadow":
            continue
        state.metrics.predictions.labels(a.pred.risk_band or "uncalibrated").inc()


def diagnosis(probabilities: dict[str, float], primary: str, melanoma_risk: float) -> Diagnosis:
    """The brief's ``diagnosis`` object from class codes."""
    return Diagnosis(
        primary=API_NAMES[primary],
        confidence=round(probabilities[primary], 6),  # type: ignore[arg-type]
        melanoma_risk=round(melanoma_risk, 6),
        all_classes={API_NAMES[c]: round(v, 6) for c, v in probabilities.items()},
    )  # type: ignore[misc]


def _response(state: ServiceState, a: _Answered, latency_ms: int) -> AnalyzeResponse:
    p, row = a.pred, a.row
    assert row is not None
    return AnalyzeResponse(
        diagnosis=diagnosis(p.probabilities, p.primary, p.melanoma_risk),
        attention_map=a.attention_map,
        attention_map_type=p.media_type(state.settings.attention_map_format) if a.attention_map else None,
        recommendation=state.settings.recommendations[p.risk_band or "uncalibrated"],
        model_version=p.model_version,
        latency_ms=latency_ms,
        prediction_id=row.id,
        risk_band=p.risk_band,  # type: ignore[arg-type]
        melanoma_flag=p.melanoma_flag,
        threshold=p.threshold,
    )


__all__ = ["Intake", "analyze", "check_clinic", "diagnosis"]
