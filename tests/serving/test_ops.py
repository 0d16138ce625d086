"""/healthz, /readyz and /metrics of a live server; several concurrent clients."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.serving.conftest import Live, b64, jpeg


def _samples(live: Live) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(live.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }


def test_health_and_ready(live: Live) -> None:
    assert httpx.get(live.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(live.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["runtime"] == "onnxruntime" and ready["model_version"]


def test_concurrent_clients_and_metrics(live: Live) -> None:
    def one(i: int) -> httpx.Response:
        return live.client().post(
            "/api/v1/analyze", json={"image": b64(jpeg(seed=i)), "clinic_id": "clinic-a", "patient_id": f"P-{i}"}
        )

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(one, range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    assert len({r.json()["prediction_id"] for r in responses}) == 12
    live.client().post(
        "/api/v1/analyze/batch",
        json={"clinic_id": "clinic-a", "patient_id": "P", "images": [{"image": b64(jpeg(seed=i))} for i in range(3)]},
    )
    live.client().post("/api/v1/analyze", json={"image": "!", "clinic_id": "clinic-a", "patient_id": "P"})
    httpx.get(live.url + "/api/v1/predictions/some-id")  # no key: 401, labelled by the route template

    m = _samples(live)
    route = "dermascan_http_request_duration_seconds_count"
    assert m[(route, (("method", "POST"), ("route", "/api/v1/analyze"), ("status", "200")))] == 12
    assert m[(route, (("method", "POST"), ("route", "/api/v1/analyze"), ("status", "422")))] == 1
    assert m[(route, (("method", "POST"), ("route", "/api/v1/analyze/batch"), ("status", "200")))] == 1
    assert m[(route, (("method", "GET"), ("route", "/api/v1/predictions/{prediction_id}"), ("status", "401")))] == 1
    assert not any("some-id" in str(k) for k in m)  # ids never become labels
    # 12 single calls + 1 batch call queued; the micro-batcher may have joined concurrent ones into fewer calls
    assert m[("dermascan_queue_wait_seconds_count", ())] == 13
    calls = m[("dermascan_inference_duration_seconds_count", ())]
    assert 1 <= calls <= 13 and m[("dermascan_batch_size_count", ())] == calls
    assert m[("dermascan_batch_size_sum", ())] == 15
    assert m[("dermascan_queue_depth", ())] == 0
    assert sum(v for (name, _), v in m.items() if name == "dermascan_predictions_total") == 15
    info = [k for k in m if k[0] == "dermascan_model_info"]
    assert info and dict(info[0][1])["runtime"] == "onnxruntime"
    assert m[("process_resident_memory_bytes", ())] > 10e6


def test_openapi_documents_every_route_with_an_example(live: Live) -> None:
    spec = httpx.get(live.url + "/openapi.json").json()
    routes = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == {
        ("/api/v1/analyze", "post"),
        ("/api/v1/analyze/batch", "post"),
        ("/api/v1/feedback", "post"),
        ("/api/v1/predictions", "get"),
        ("/api/v1/predictions/{prediction_id}", "get"),
        ("/api/v1/monitor", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    schemas = spec["components"]["schemas"]

    def has_example(content: dict) -> bool:
        for media in content.values():
            if "example" in media or "examples" in media:
                return True
            ref = media.get("schema", {}).get("$ref", "")
            if ref and "examples" in schemas[ref.rsplit("/", 1)[-1]]:
                return True
        return False

    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert has_example(op["responses"]["200" if "200" in op["responses"] else "201"]["content"]), (path, method)
            if "requestBody" in op:
                assert has_example(op["requestBody"]["content"]), (path, method)
    assert set(spec["paths"]["/api/v1/analyze"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }
