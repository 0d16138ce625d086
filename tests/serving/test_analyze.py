"""POST /api/v1/analyze and /analyze/batch against a live server: the brief's request and response, multipart,
data URLs, batches with a bad image, and the stored rows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io

import jsonschema
from PIL import Image
from sqlalchemy import select
from tests.serving.brief_schema import BRIEF_RESPONSE
from tests.serving.conftest import PATIENT_KEY, Live, b64, encode, jpeg, png

from dermascan.serving.settings import DEFAULT_RECOMMENDATIONS
from dermascan.store.models import AccessLog, PredictionRow


def _row(live: Live, prediction_id: str) -> PredictionRow | None:
    from sqlalchemy.orm import Session

    with Session(live.engine) as s:
        return s.get(PredictionRow, prediction_id)


def test_brief_request_gives_brief_response(live: Live) -> None:
    image = jpeg(80, 60)
    body = {"image": b64(image), "clinic_id": "clinic-a", "patient_id": "P-000123"}  # exactly the brief's request
    r = live.client().post("/api/v1/analyze", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    jsonschema.validate(out, BRIEF_RESPONSE)
    probs = out["diagnosis"]["all_classes"]
    assert abs(sum(probs.values()) - 1) < 1e-4
    assert out["diagnosis"]["confidence"] == probs[out["diagnosis"]["primary"]]
    assert out["diagnosis"]["melanoma_risk"] == probs["melanoma"]
    assert out["melanoma_flag"] == (out["diagnosis"]["melanoma_risk"] >= out["threshold"])
    assert out["recommendation"] == DEFAULT_RECOMMENDATIONS[out["risk_band"]]
    overlay = Image.open(io.BytesIO(base64.b64decode(out["attention_map"])))
    assert overlay.format == "JPEG" and overlay.size == (80, 60)  # over the whole image, as sent
    assert out["attention_map_type"] == "image/jpeg"  # the default attention_map_format

    # each step's milliseconds, for an operator's browser tools and benchmarks/bench_service.py
    steps = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert set(steps) == {"parse", "check", "model", "render", "store", "total"}
    assert all(float(v) >= 0 for v in steps.values()) and float(steps["total"]) >= float(steps["model"])

    row = _row(live, out["prediction_id"])
    assert row is not None and row.clinic_id == "clinic-a"
    assert row.patient_hash == hmac.new(PATIENT_KEY.encode(), b"P-000123", hashlib.sha256).hexdigest()
    assert "P-000123" not in repr(row.__dict__)
    assert abs(row.melanoma_risk - out["diagnosis"]["melanoma_risk"]) < 1e-6
    assert (row.width, row.height) == (80, 60) and 0 < row.brightness < 1 and row.contrast > 0
    assert row.mean_r > row.mean_b  # the synthetic image is skin-toned
    assert len(row.bundle_digest) == 64 and row.role == "primary" and row.latency_ms > 0


def test_multipart_upload(live: Live) -> None:
    r = live.client().post(
        "/api/v1/analyze",
        files={"image": ("lesion.png", png(), "image/png")},
        data={"clinic_id": "clinic-a", "patient_id": "P-2", "lesion_id": "L7", "body_site": "back"},
    )
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), BRIEF_RESPONSE)
    row = _row(live, r.json()["prediction_id"])
    assert row is not None and (row.lesion_id, row.body_site, row.width, row.height) == ("L7", "back", 48, 40)


def test_multipart_base64_text_field(live: Live) -> None:
    r = live.client().post(
        "/api/v1/analyze", files={"clinic_id": (None, "clinic-a")}, data={"image": b64(jpeg()), "patient_id": "P-2"}
    )
    assert r.status_code == 200, r.text


def test_data_url_is_accepted(live: Live) -> None:
    r = live.client().post(
        "/api/v1/analyze",
        json={"image": "data:image/jpeg;base64," + b64(jpeg()), "clinic_id": "clinic-a", "patient_id": "P-3"},
    )
    assert r.status_code == 200, r.text


def test_line_wrapped_base64_is_accepted(live: Live) -> None:
    text = b64(png())
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))  # what `base64` (MIME) prints
    body = {"image": wrapped, "clinic_id": "clinic-a", "patient_id": "P-4"}
    assert live.client().post("/api/v1/analyze", json=body).status_code == 200


def test_rgba_and_grey_png_are_converted(live: Live) -> None:
    rgba = encode(Image.new("RGBA", (40, 40), (200, 100, 80, 128)), "PNG")
    grey = encode(Image.new("L", (40, 40), 128), "PNG")
    assert live.analyze(image=rgba).status_code == 200
    assert live.analyze(image=grey).status_code == 200


def test_batch_with_one_bad_image(live: Live) -> None:
    gif = encode(Image.new("RGB", (40, 40)), "GIF")
    images = [
        {"image": b64(jpeg(seed=1)), "lesion_id": "L1"},
        {"image": b64(gif), "lesion_id": "L2"},
        {"image": "not base64!", "lesion_id": "L3"},
        {"image": b64(png(seed=2)), "lesion_id": "L4"},
    ]
    r = live.client().post(
        "/api/v1/analyze/batch", json={"clinic_id": "clinic-a", "patient_id": "P-9", "images": images}
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert items[1]["result"] is None and items[1]["error"]["code"] == "unsupported_image_format"
    assert "images.1.image is a GIF image" in items[1]["error"]["message"]
    assert items[2]["error"]["code"] == "invalid_base64"
    for i in (0, 3):
        assert items[i]["error"] is None
        jsonschema.validate(items[i]["result"], BRIEF_RESPONSE)
        row = _row(live, items[i]["result"]["prediction_id"])
        assert row is not None and row.lesion_id == f"L{i + 1}"
    from sqlalchemy.orm import Session

    with Session(live.engine) as s:  # one access-log entry for the visit, naming both stored predictions
        entry = s.scalars(select(AccessLog).where(AccessLog.action == "analyze").order_by(AccessLog.id.desc())).first()
    assert entry is not None and set(entry.detail["predictions"]) == {
        items[0]["result"]["prediction_id"],
        items[3]["result"]["prediction_id"],
    }


def test_batch_size_limit(live: Live) -> None:
    max_batch = live.server.settings.max_batch
    images = [{"image": b64(png())}] * (max_batch + 1)
    r = live.client().post("/api/v1/analyze/batch", json={"clinic_id": "clinic-a", "patient_id": "P", "images": images})
    assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"
    assert f"at most {max_batch}" in r.json()["error"]["message"]


def test_recommendation_text_is_configurable(tiny_bundle, tmp_path) -> None:
    from tests.serving.conftest import start_service

    texts = {"low": "LOW-TEXT", "moderate": "MODERATE-TEXT", "high": "HIGH-TEXT", "uncalibrated": "UNCAL"}
    with start_service(tmp_path, tiny_bundle, recommendations=texts, heatmap=False) as service:
        out = service.analyze().json()
    assert out["recommendation"] == texts[out["risk_band"]]
    assert out["attention_map"] is None and out["attention_map_type"] is None  # heat maps switched off


def test_attention_map_as_lossless_png(tiny_bundle, tmp_path) -> None:
    from tests.serving.conftest import start_service

    with start_service(tmp_path, tiny_bundle, attention_map_format="png") as service:
        out = service.analyze().json()
    overlay = Image.open(io.BytesIO(base64.b64decode(out["attention_map"])))
    assert overlay.format == "PNG" and out["attention_map_type"] == "image/png"


def test_attention_map_of_a_large_image_is_capped(live: Live) -> None:
    out = live.analyze(image=jpeg(800, 600)).json()
    overlay = Image.open(io.BytesIO(base64.b64decode(out["attention_map"])))
    assert overlay.size == (512, 384)  # attention_map_max_side, aspect kept


def test_a_large_jpeg_is_decoded_at_the_models_draft_scale(live: Live, tiny_bundle) -> None:
    """The service decodes a JPEG as the bundle's training did (``jpeg_draft``: 1600x1200 at 1/2 -> 800x600), so
    its answer is the Predictor's on the same file; the stored capture size is the file's own, which the quality
    checks and the monitor read."""
    from dermascan.inference import Predictor

    image = jpeg(1600, 1200)
    with Predictor.from_path(tiny_bundle, runtime="onnxruntime") as predictor:
        assert predictor.card.preprocessing.jpeg_draft == 384
        prepared = predictor.prepare(image)
        assert prepared.rgb.size == (800, 600)
        (expected,) = predictor.predict([image])
    out = live.analyze(image=image).json()
    assert abs(out["diagnosis"]["melanoma_risk"] - expected.melanoma_risk) < 1e-5
    assert abs(out["diagnosis"]["confidence"] - expected.confidence) < 1e-5
    row = _row(live, out["prediction_id"])
    assert (row.width, row.height) == (1600, 1200)
