"""Every malformed request gets a 4xx with ``{"error": {"code", "message"}}`` naming what is wrong; never a 500."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.serving.conftest import Live, b64, encode, jpeg, png, start_service

MAX_BODY = 1_000_000


def _bomb() -> bytes:
    """A 12000 x 12000 PNG (144 M pixels) that compresses to a few kB: a decompression bomb."""
    return encode(Image.new("1", (12000, 12000)), "PNG", optimize=True)


def _json(image: str | Any = None, **extra: Any) -> dict[str, Any]:
    body = {"image": b64(jpeg()) if image is None else image, "clinic_id": "clinic-a", "patient_id": "P-1"}
    body.update(extra)
    return {"json": {k: v for k, v in body.items() if v is not ...}}


@dataclass(frozen=True)
class Case:
    """One malformed request: what is sent, the status and error code expected, a phrase of the message."""

    name: str
    request: Callable[[], dict[str, Any]]
    status: int
    code: str
    message: str
    method: str = "POST"
    path: str = "/api/v1/analyze"
    clinic: str | None = "clinic-a"


CASES = [
    Case("bad base64", lambda: _json("iVBOR!!not*base64"), 422, "invalid_base64", "is not valid base64"),
    Case("base64 with a wrong length", lambda: _json("iVBORw0"), 422, "invalid_base64", "is not valid base64"),
    Case(
        "data URL of a GIF",
        lambda: _json("data:image/gif;base64," + b64(encode(Image.new("RGB", (40, 40)), "GIF"))),
        415,
        "unsupported_image_format",
        "data URL of type 'image/gif'",
    ),
    Case(
        "data URL without ;base64",
        lambda: _json("data:image/png," + b64(png())),
        422,
        "invalid_data_url",
        "without ';base64'",
    ),
    Case(
        "data URL type differs from file",
        lambda: _json("data:image/png;base64," + b64(jpeg())),
        422,
        "format_mismatch",
        "declared as PNG",
    ),
    Case(
        "text, not an image",
        lambda: _json(b64(b"just some text, not a picture at all")),
        422,
        "not_an_image",
        "is not an image file",
    ),
    Case("truncated JPEG", lambda: _json(b64(jpeg(256, 192)[:1500])), 422, "unreadable_image", "truncated"),
    Case("truncated PNG", lambda: _json(b64(png(64, 64)[:300])), 422, "unreadable_image", "truncated"),
    Case(
        "GIF",
        lambda: _json(b64(encode(Image.new("RGB", (40, 40)), "GIF"))),
        415,
        "unsupported_image_format",
        "is a GIF image; only PNG and JPEG",
    ),
    Case(
        "TIFF",
        lambda: _json(b64(encode(Image.new("RGB", (40, 40)), "TIFF"))),
        415,
        "unsupported_image_format",
        "is a TIFF image",
    ),
    Case(
        "1x1 image",
        lambda: _json(b64(encode(Image.new("RGB", (1, 1)), "PNG"))),
        422,
        "image_too_small",
        "is 1x1; each side must be at least",
    ),
    Case("pixel bomb", lambda: _json(b64(_bomb())), 413, "image_too_large", "144,000,000 pixels"),
    Case("empty image", lambda: _json(""), 422, "empty_image", "image is empty"),
    Case("empty patient_id", lambda: _json(patient_id=""), 422, "invalid_request", "patient_id: String should have"),
    Case("missing patient_id", lambda: _json(patient_id=...), 422, "invalid_request", "patient_id: required field"),
    Case("missing image", lambda: _json(image=...), 422, "invalid_request", "image: required field missing"),
    Case("image is a number", lambda: _json(12345), 422, "invalid_request", "image: Input should be a valid string"),
    Case("body is a list", lambda: {"json": [1, 2]}, 422, "invalid_request", "valid dictionary"),
    Case("unknown field", lambda: _json(patientId="P"), 422, "invalid_request", "patientId: Extra inputs"),
    Case(
        "not JSON",
        lambda: {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        400,
        "invalid_json",
        "not valid JSON",
    ),
    Case(
        "plain-text body",
        lambda: {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "'text/plain' is not accepted",
    ),
    Case(
        "body over the size limit",
        lambda: _json("A" * (MAX_BODY + 10)),
        413,
        "payload_too_large",
        "larger than 1,000,000 bytes",
    ),
    Case(
        "multipart without image",
        lambda: {
            "data": {"clinic_id": "clinic-a", "patient_id": "P"},
            "files": {"other": ("x.txt", b"x", "text/plain")},
        },
        422,
        "invalid_request",
        "other: a file was sent",
    ),
    Case(
        "multipart GIF upload",
        lambda: {
            "data": {"clinic_id": "clinic-a", "patient_id": "P"},
            "files": {"image": ("a.gif", encode(Image.new("RGB", (40, 40)), "GIF"))},
        },
        415,
        "unsupported_image_format",
        "GIF",
    ),
    Case(
        "batch with no images",
        lambda: {"json": {"clinic_id": "clinic-a", "patient_id": "P", "images": []}},
        422,
        "invalid_request",
        "images: List should have at least 1 item",
        path="/api/v1/analyze/batch",
    ),
    Case(
        "unknown prediction id",
        lambda: {},
        404,
        "not_found",
        "no prediction 'no-such-id'",
        method="GET",
        path="/api/v1/predictions/no-such-id",
    ),
    Case(
        "feedback for unknown prediction",
        lambda: {"json": {"prediction_id": "nope", "clinician_diagnosis": "melanoma"}},
        404,
        "not_found",
        "no prediction 'nope'",
        path="/api/v1/feedback",
    ),
    Case(
        "feedback without a label",
        lambda: {"json": {"prediction_id": "x"}},
        422,
        "invalid_request",
        "give clinician_diagnosis and/or histopathology",
        path="/api/v1/feedback",
    ),
    Case(
        "feedback with an unknown class",
        lambda: {"json": {"prediction_id": "x", "histopathology": "mole"}},
        422,
        "invalid_request",
        "histopathology: Input should be",
        path="/api/v1/feedback",
    ),
    Case(
        "list with limit 0",
        lambda: {"params": {"limit": 0}},
        422,
        "invalid_request",
        "limit: Input should be greater",
        method="GET",
        path="/api/v1/predictions",
    ),
    Case(
        "list with a bad date",
        lambda: {"params": {"since": "yesterday"}},
        422,
        "invalid_request",
        "since:",
        method="GET",
        path="/api/v1/predictions",
    ),
    Case("no API key", lambda: _json(), 401, "unauthorized", "missing API key", clinic=None),
    Case(
        "bad API key",
        lambda: {**_json(), "headers": {"Authorization": "Bearer dsk_wrong"}},
        401,
        "unauthorized",
        "unknown or revoked API key",
        clinic=None,
    ),
    Case(
        "revoked API key",
        lambda: _json(clinic_id="clinic-c"),
        401,
        "unauthorized",
        "unknown or revoked",
        clinic="revoked",
    ),
    Case(
        "Basic instead of Bearer",
        lambda: {**_json(), "headers": {"Authorization": "Basic dXNlcjpwdw=="}},
        401,
        "unauthorized",
        "missing API key",
        clinic=None,
    ),
    Case(
        "another clinic's id",
        lambda: _json(clinic_id="clinic-b"),
        403,
        "forbidden_clinic",
        "belongs to clinic 'clinic-a', not 'clinic-b'",
    ),
    Case(
        "unknown route",
        lambda: {},
        404,
        "not_found",
        "no route GET /api/v1/nothing",
        method="GET",
        path="/api/v1/nothing",
    ),
    Case(
        "wrong method",
        lambda: {},
        405,
        "method_not_allowed",
        "GET is not allowed on /api/v1/analyze; use POST",
        method="GET",
    ),
]


@pytest.fixture(scope="module")
def small_live(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with start_service(tmp_path_factory.mktemp("malformed"), tiny_bundle, max_body_bytes=MAX_BODY) as service:
        yield service


def send(live: Live, case: Case) -> Any:
    return live.client(case.clinic).request(case.method, case.path, **case.request())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request_gets_its_4xx(small_live: Live, case: Case) -> None:
    r = send(small_live, case)
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and set(err) == {"code", "message"}
    assert err["code"] == case.code
    assert case.message in err["message"], err["message"]
    assert "Traceback" not in r.text


def test_nothing_stored_for_rejected_requests(small_live: Live) -> None:
    from sqlalchemy.orm import Session

    from dermascan.store import predictions

    with Session(small_live.engine) as s:
        assert predictions.count(s) == 0  # every case above was refused before the store


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
def test_an_oversized_body_always_reads_its_413(small_live: Live, chunked: bool) -> None:
    """The server reads and drops the rest of the body before answering: closing on unread bytes resets the
    connection, and the client then sees a read error instead of the 413 (a race that a 3 MB body loses often)."""
    body = b'{"image": "' + b"A" * (3 * MAX_BODY) + b'"}'
    for _ in range(10):
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
        r = small_live.client().post("/api/v1/analyze", content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
