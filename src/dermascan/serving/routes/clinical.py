"""Feedback and the clinic's own predictions: POST /api/v1/feedback, GET /api/v1/predictions[/{id}]."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from dermascan.serving import records
from dermascan.serving.auth import Auth
from dermascan.serving.errors import ServiceError
from dermascan.serving.routes.analyze import _errors
from dermascan.serving.schemas import FeedbackRecord, FeedbackRequest, PredictionPage, PredictionRecord
from dermascan.serving.state import State
from dermascan.store.predictions import PredictionFilter

router = APIRouter(prefix="/api/v1", tags=["clinical"])


@router.post(
    "/feedback",
    response_model=FeedbackRecord,
    status_code=201,
    responses=_errors(400, 401, 404, 422, 503),
    summary="Record a clinician diagnosis and/or histopathology result",
)
async def feedback(body: FeedbackRequest, state: State, caller: Auth) -> FeedbackRecord:
    """Appended to the prediction's feedback; a correction is a new entry that supersedes the previous one."""
    return await run_in_threadpool(records.add_feedback, state, caller, body)


@router.get(
    "/predictions",
    response_model=PredictionPage,
    responses=_errors(401, 422, 503),
    summary="The calling clinic's predictions, newest first",
)
async def list_predictions(
    state: State,
    caller: Auth,
    flagged: Annotated[bool | None, Query(description="Only flagged (true) or unflagged (false).")] = None,
    awaiting_histopathology: Annotated[
        bool | None, Query(description="Only without (true) or with (false) a histopathology result.")
    ] = None,
    since: Annotated[dt.datetime | None, Query(description="Created at or after (ISO 8601; no zone: UTC).")] = None,
    until: Annotated[dt.datetime | None, Query(description="Created before (ISO 8601; no zone: UTC).")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip.")] = 0,
) -> PredictionPage:
    where = PredictionFilter(flagged, awaiting_histopathology, _utc(since, "since"), _utc(until, "until"))
    return await run_in_threadpool(records.page, state, caller, where, limit, offset)


@router.get(
    "/predictions/{prediction_id}",
    response_model=PredictionRecord,
    responses=_errors(401, 404, 503),
    summary="One of the calling clinic's predictions, with its feedback",
)
async def get_prediction(prediction_id: str, state: State, caller: Auth) -> PredictionRecord:
    """Another clinic's prediction answers 404, exactly like one that does not exist."""
    return await run_in_threadpool(records.one, state, caller, prediction_id)


def _utc(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError as e:
        raise ServiceError(422, "invalid_request", f"{name}: {value.isoformat()} is out of range in UTC") from e
