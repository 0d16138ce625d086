"""Schemathesis against the live server's /openapi.json: no 5xx, every response matches its documented schema,
status code and content type. Positive and negative cases for every operation (and both request media types of
/analyze), FUZZ_EXAMPLES of each: a bounded run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.serving.conftest import Live, start_service

FUZZ_EXAMPLES = int(os.environ.get("DERMASCAN_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
OPERATIONS = [
    ("POST", "/api/v1/analyze", "application/json"),
    ("POST", "/api/v1/analyze", "multipart/form-data"),
    ("POST", "/api/v1/analyze/batch", None),
    ("POST", "/api/v1/feedback", None),
    ("GET", "/api/v1/predictions", None),
    ("GET", "/api/v1/predictions/{prediction_id}", None),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", None),
]
CASES: list[tuple[str, str, str, int]] = []  # (method, path, mode, status) of every call made


@pytest.fixture(scope="module")
def fuzz_live(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with start_service(tmp_path_factory.mktemp("fuzz"), tiny_bundle) as service:
        yield service
    statuses: dict[int, int] = {}
    for *_, status in CASES:
        statuses[status] = statuses.get(status, 0) + 1
    print(f"\nschemathesis: {len(CASES)} cases, statuses {dict(sorted(statuses.items()))}")


@pytest.fixture(scope="module")
def api_schema(fuzz_live: Live):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(fuzz_live.url + "/openapi.json")


NO_INPUT = {"/healthz", "/readyz", "/metrics"}  # nothing to make invalid: only positive cases
RUNS = [
    (m, p, t, mode)
    for m, p, t in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (p in NO_INPUT and mode is GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize(
    ("method", "path", "media_type", "mode"),
    RUNS,
    ids=[f"{m} {p} {t or ''} {mode.value}".replace("  ", " ") for m, p, t, mode in RUNS],
)
def test_api_never_5xx_and_matches_schema(
    api_schema,
    fuzz_live: Live,
    method: str,
    path: str,  # type: ignore[no-untyped-def]
    media_type: str | None,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {fuzz_live.keys['clinic-a']}"}
    strategy = operation.as_strategy(generation_mode=mode, media_type=media_type)

    @given(case=strategy)
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and "clinic_id" in case.body:
            case.body["clinic_id"] = "clinic-a"  # past the clinic check, so the image checks get fuzzed too
        response = case.call_and_validate(base_url=fuzz_live.url, headers=auth, checks=CHECKS)
        CASES.append((method, path, mode.value, response.status_code))

    run()
