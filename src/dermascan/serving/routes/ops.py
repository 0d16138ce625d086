"""Operations: GET /healthz (process up), /readyz (model loaded and warmed), /metrics (Prometheus text), and
/api/v1/monitor (the latest monitor report, for operator keys)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from dermascan.serving.auth import Auth
from dermascan.serving.errors import ServiceError
from dermascan.serving.monitor_report import read_report
from dermascan.serving.routes.analyze import _errors
from dermascan.serving.schemas import Health, Ready
from dermascan.serving.state import State

router = APIRouter(tags=["operations"])

_METRICS_EXAMPLE = (
    "# HELP dermascan_inference_duration_seconds Model time per inference call (one batch).\n"
    "# TYPE dermascan_inference_duration_seconds histogram\n"
    'dermascan_inference_duration_seconds_bucket{le="0.005"} 12.0\n'
)


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=_errors(503), summary="The model is loaded and warmed")
async def readyz(state: State) -> Ready:
    engine = state.engine
    if engine is None or not engine.ready:
        raise ServiceError(503, "not_ready", "the model is still loading; retry in a few seconds")
    return Ready(status="ready", model_version=engine.predictor.model_version, runtime=engine.predictor.runtime)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics of this process",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}, "example": _METRICS_EXAMPLE}}}},
)
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


_MONITOR_EXAMPLE = {
    "period": {"since": "2026-02-01T00:00:00+00:00", "until": "2026-02-02T00:00:00+00:00", "window": "1 day, 0:00:00"},
    "alerts": ["input_drift"],
    "first_alert": {"input_drift": "2026-02-01T00:00:00+00:00", "sensitivity": None},
    "windows": [
        {
            "start": "2026-02-01T00:00:00+00:00",
            "n": 150,
            "input_drift": {"max_psi": 0.25, "level": "alert", "by_clinic": {"clinic-1": {"max_psi": 2.37}}},
            "quality": {"state": "ok", "n_melanoma": 414, "sensitivity": {"value": 0.91, "lo": 0.88, "hi": 0.93}},
            "alerts": ["input_drift"],
        }
    ],
}


@router.get(
    "/api/v1/monitor",
    responses={200: {"content": {"application/json": {"example": _MONITOR_EXAMPLE}}}, **_errors(401, 403, 404)},
    summary="The latest monitor report (monitor.json; `dermascan monitor` writes it), for operator keys",
)
async def monitor_report(state: State, caller: Auth) -> dict:
    if not caller.is_operator:
        raise ServiceError(403, "forbidden_role", "the monitor report is for operator keys; this is a clinic's key")
    report = await run_in_threadpool(read_report, state.settings.monitor_dir)
    if report is None:
        raise ServiceError(
            404, "no_monitor_report", "no monitor report: run `dermascan monitor` into the service's monitor_dir"
        )
    return report
