"""The visit (analyse a visit's images), the worklist, a case and its feedback.

Each route calls the function the JSON API calls: :func:`~dermascan.serving.analysis.analyze` (the batch
flow), :mod:`~dermascan.serving.records` for reads and feedback, so the page and the API cannot disagree.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from dermascan.serving import records
from dermascan.serving.analysis import Intake, analyze
from dermascan.serving.errors import ServiceError, validation_message
from dermascan.serving.pages import present
from dermascan.serving.pages.common import CSRF_FIELD, Page, PageError, check_csrf, refusal, render, utc_day
from dermascan.serving.schemas import FeedbackRequest, PredictionRecord
from dermascan.serving.state import ServiceState, State
from dermascan.store.predictions import PredictionFilter

router = APIRouter(include_in_schema=False)
_MAX_TEXT = {"patient_id": 256, "lesion_id": 128, "body_site": 64}


@router.get("/visit")
async def visit_form(request: Request, state: State, page: Page) -> Response:
    return render(request, "visit.html", page=page, max_batch=state.settings.max_batch)


def _text(value: object, name: str) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > _MAX_TEXT[name]:
        raise PageError(422, f"{name.replace('_', ' ')}: at most {_MAX_TEXT[name]} characters")
    return text or None


@router.post("/visit")
async def visit(request: Request, state: State, page: Page) -> Response:
    t0 = time.perf_counter()
    n = state.settings.max_batch
    form = await request.form(max_files=n + 1, max_fields=3 * n + 4)
    check_csrf(page.token, form.get(CSRF_FIELD))
    patient_id = _text(form.get("patient_id"), "patient_id")
    if patient_id is None:
        raise PageError(422, "Patient ID is required (it is stored only as a keyed hash).")
    files = [f for f in form.getlist("images") if isinstance(f, UploadFile) and (f.filename or f.size)]
    if not files:
        raise PageError(422, "Pick at least one PNG or JPEG image of a lesion.")
    if len(files) > n:
        raise PageError(413, f"{len(files)} images picked; at most {n} per visit. Analyse the rest in a second visit.")
    labels, sites = form.getlist("lesion_id"), form.getlist("body_site")
    intakes, names = [], []
    for i, f in enumerate(files):
        name = f.filename or f"image {i + 1}"
        intakes.append(
            Intake(
                f"Image {i + 1} ({name})",
                await f.read(),
                lesion_id=_text(labels[i] if i < len(labels) else None, "lesion_id"),
                body_site=_text(sites[i] if i < len(sites) else None, "body_site"),
            )
        )
        names.append(name)
    try:
        results = await analyze(state, page.caller, patient_id, intakes, t0)
    except ServiceError as e:
        raise refusal(e) from e
    max_side = state.settings.attention_map_max_side
    shown: list[present.Lesion | dict[str, str]] = []
    for item, name, r in zip(intakes, names, results, strict=True):
        if isinstance(r, ServiceError):
            shown.append({"filename": name, "message": r.message, "lesion_id": item.lesion_id or ""})
            continue
        assert item.data is not None
        photo = await run_in_threadpool(present.photo_url, item.data, max_side)
        shown.append(
            present.lesion(
                r.diagnosis, r.risk_band, r.threshold, r.melanoma_flag, r.model_version, r.prediction_id,
                r.recommendation, lesion_id=item.lesion_id, body_site=item.body_site, filename=name, photo=photo,
                heatmap=f"data:{r.attention_map_type};base64,{r.attention_map}" if r.attention_map else None,
            )
        )  # fmt: skip
    return render(request, "visit.html", page=page, max_batch=n, results=shown)


@router.get("/cases")
async def worklist(
    request: Request,
    state: State,
    page: Page,
    awaiting: bool = False,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    start, end = utc_day(since, "From"), utc_day(until, "To", next_day=True)
    histo = True if awaiting else None

    def read(flagged: bool) -> list[PredictionRecord]:
        where = PredictionFilter(flagged, histo, start, end)
        return records.page(state, page.caller, where, 100, 0).items

    try:  # flagged first: two reads of the same list function the API's GET /api/v1/predictions uses
        rows = await run_in_threadpool(read, True) + await run_in_threadpool(read, False)
    except ServiceError as e:
        raise refusal(e) from e
    cases = [(_case(state, r), r) for r in rows]
    return render(
        request,
        "cases.html",
        page=page,
        cases=cases,
        awaiting=awaiting,
        since=since or "",
        until=until or "",
        outcome_words=present.outcome_words,
    )


def _case(state: ServiceState, r: PredictionRecord) -> present.Lesion:
    recommendation = state.settings.recommendations[r.risk_band or "uncalibrated"]
    return present.lesion(
        r.diagnosis, r.risk_band, r.threshold, r.melanoma_flag, r.model_version, r.prediction_id, recommendation,
        lesion_id=r.lesion_id, body_site=r.body_site,
    )  # fmt: skip


async def _show_case(
    request: Request, state: State, page: Page, case_id: str, status: int = 200, error: str | None = None
) -> Response:
    try:
        record = await run_in_threadpool(records.one, state, page.caller, case_id)
    except ServiceError as e:
        raise refusal(e) from e
    return render(
        request,
        "case.html",
        status,
        page=page,
        record=record,
        case=_case(state, record),
        error=error,
        saved=request.query_params.get("saved") == "true",
        clinician_choices=present.CLINICIAN_CHOICES,
        histopathology_choices=present.HISTOPATHOLOGY_CHOICES,
        outcome_words=present.outcome_words,
    )


@router.get("/cases/{case_id}")
async def case(request: Request, state: State, page: Page, case_id: str) -> Response:
    return await _show_case(request, state, page, case_id)


@router.post("/cases/{case_id}/feedback")
async def case_feedback(request: Request, state: State, page: Page, case_id: str) -> Response:
    form = await request.form(max_files=0, max_fields=6)
    check_csrf(page.token, form.get(CSRF_FIELD))
    fields = {k: form.get(k) or None for k in ("clinician_diagnosis", "histopathology", "histopathology_date")}
    source = "histopathology" if fields["histopathology"] else "clinician"
    try:
        body = FeedbackRequest.model_validate({"prediction_id": case_id, "source": source, **fields})
    except ValidationError as e:
        _, message = validation_message(list(e.errors()))
        return await _show_case(request, state, page, case_id, 422, message)
    try:
        await run_in_threadpool(records.add_feedback, state, page.caller, body)
    except ServiceError as e:
        raise refusal(e) from e
    return RedirectResponse(f"/cases/{case_id}?saved=true", status_code=303)
