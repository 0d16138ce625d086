"""POST /api/v1/analyze (JSON or multipart/form-data) and POST /api/v1/analyze/batch."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from dermascan.serving.analysis import Intake, analyze, check_clinic
from dermascan.serving.auth import Auth
from dermascan.serving.errors import ServiceError, validation_message
from dermascan.serving.images import decode_base64
from dermascan.serving.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    BatchItem,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    ErrorDetail,
)
from dermascan.serving.state import State

router = APIRouter(prefix="/api/v1", tags=["analyze"])


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody} for s in statuses}


_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["image", "clinic_id", "patient_id"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "The PNG or JPEG file."},
        "clinic_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "patient_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "lesion_id": {"type": "string", "maxLength": 128},
        "body_site": {"type": "string", "maxLength": 64},
    },
}
_ANALYZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": AnalyzeRequest.model_json_schema(),
                "example": AnalyzeRequest.model_config["json_schema_extra"]["examples"][0],
            },  # type: ignore[index]
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}


def _t0(request: Request) -> float:
    return getattr(request.state, "t0", None) or time.perf_counter()


def _timings(request: Request) -> dict[str, float] | None:
    """Where the steps' milliseconds go (the middleware sends them as ``Server-Timing``)."""
    return getattr(request.state, "timings", None)


async def _parse_analyze(request: Request) -> tuple[AnalyzeRequest, bytes | None]:
    """The request as JSON (``image`` base64) or multipart (``image`` a file part, or base64 text)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw: bytes | None = None
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key in fields:
                raise ServiceError(422, "invalid_request", f"{key}: given twice; send each field once")
            if isinstance(value, UploadFile):
                if key != "image":
                    raise ServiceError(422, "invalid_request", f"{key}: a file was sent; only 'image' is a file")
                raw = await value.read()
                fields[key] = "-"  # placeholder: the file's bytes are checked as an image, not as base64
            else:
                fields[key] = value
        payload: Any = fields
    elif ctype in ("application/json", ""):
        try:
            payload = await request.json()
        except ValueError as e:
            raise ServiceError(
                400,
                "invalid_json",
                "the request body is not valid JSON; send a JSON object "
                "(Content-Type: application/json) or a multipart/form-data upload",
            ) from e
    else:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"Content-Type {ctype!r} is not accepted; send application/json or multipart/form-data",
        )
    try:
        return AnalyzeRequest.model_validate(payload), raw
    except ValidationError as e:
        code, message = validation_message(list(e.errors()))
        raise ServiceError(422, code, message) from e


@router.post(
    "/analyze",
    response_model=AnalyzeResponse,
    openapi_extra=_ANALYZE_BODY,
    responses=_errors(400, 401, 403, 413, 415, 422, 503),
    summary="Analyse one lesion image",
)
async def analyze_one(request: Request, state: State, caller: Auth) -> AnalyzeResponse:
    """The brief's request (JSON, ``image`` in base64 or a data URL), or the same fields as multipart/form-data
    (what `curl -F image=@lesion.jpg` and a browser form send)."""
    t0 = _t0(request)
    req, raw = await _parse_analyze(request)
    check_clinic(caller, req.clinic_id)
    if raw is not None:
        intake = Intake("image", raw, lesion_id=req.lesion_id, body_site=req.body_site)
    else:
        intake = Intake("image", decode_base64(req.image), lesion_id=req.lesion_id, body_site=req.body_site)
    (result,) = await analyze(state, caller, req.patient_id, [intake], t0, _timings(request))
    if isinstance(result, ServiceError):
        raise result
    return result


@router.post(
    "/analyze/batch",
    response_model=BatchResponse,
    responses=_errors(400, 401, 403, 413, 422, 503),
    summary="Analyse the lesions of one visit",
)
async def analyze_batch(request: Request, body: BatchRequest, state: State, caller: Auth) -> BatchResponse:
    """One call per visit: a bad image gets an error in its item, the others their answers."""
    t0 = _t0(request)
    check_clinic(caller, body.clinic_id)
    if len(body.images) > state.settings.max_batch:
        raise ServiceError(
            413,
            "batch_too_large",
            f"{len(body.images)} images in one batch; at most "
            f"{state.settings.max_batch} (split the visit into several calls)",
        )
    intakes = []
    for i, item in enumerate(body.images):
        field = f"images.{i}.image"
        try:
            intakes.append(Intake(field, decode_base64(item.image, field), None, item.lesion_id, item.body_site))
        except ServiceError as e:
            intakes.append(Intake(field, None, e, item.lesion_id, item.body_site))
    results = await analyze(state, caller, body.patient_id, intakes, t0, _timings(request))
    items = [
        BatchItem(index=i, error=ErrorDetail(code=r.code, message=r.message))
        if isinstance(r, ServiceError)
        else BatchItem(index=i, result=r)
        for i, r in enumerate(results)
    ]
    latency = round((time.perf_counter() - t0) * 1e3)
    return BatchResponse(
        items=items,
        model_version=state.engine.predictor.model_version,  # type: ignore[union-attr]
        latency_ms=latency,
    )
