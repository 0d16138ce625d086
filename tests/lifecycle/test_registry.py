"""The MLflow registry in a temporary tracking store: a run logged (params, per-epoch metrics, artifacts), its
evaluation, the bundle registered with its digest and fingerprint, aliases, and the service loading it by alias."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import PATIENT_KEY, jpeg
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.inference.bundle import BundleError, bundle_digest
from dermascan.lifecycle import registry
from dermascan.runs import read_data_record

pytestmark = pytest.mark.slow  # evaluation, export and a service on the tiny run: ~40 s

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_log_register_alias_and_serve(tiny_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = shutil.copytree(tiny_run, tmp_path / "run")  # evaluation writes into the run: keep the shared one clean
    run_id = registry.log_training(run, uri)
    client = MlflowClient(uri)
    logged = client.get_run(run_id)
    assert logged.data.params["arch"] == "resnet18" and logged.data.params["epochs"] == "2"
    history = client.get_metric_history(run_id, "val_selection")
    assert [m.step for m in history] == [0, 1]  # one point per epoch
    assert logged.data.tags["data_fingerprint"] == read_data_record(run)["fingerprint"]
    assert {a.path for a in client.list_artifacts(run_id, "run")} >= {"run/config.yaml", "run/history.json"}

    _ok("evaluate", "--run", str(run), "--out", str(run / "eval"), "--tracking-uri", uri)
    assert json.loads((run / registry.RUN_LINK_FILE).read_text())["run_id"] == run_id  # the same MLflow run
    metrics = client.get_run(run_id).data.metrics
    assert 0 <= metrics["test.melanoma.sensitivity"] <= 1 and "test.accuracy" in metrics

    out = _ok("export", "--run", str(run), "--out", str(tmp_path / "b1"), "--tracking-uri", uri, "--alias", "champion")
    assert "registered dermascan version 1 as champion" in out
    _ok("export", "--run", str(run), "--out", str(tmp_path / "b2"), "--tracking-uri", uri, "--version", "2.0.0")
    _ok("registry", "alias", "challenger", "2", "--tracking-uri", uri)
    champion = registry.get_version("models:/dermascan@champion", uri)
    assert champion.version == "1" and champion.digest == bundle_digest(tmp_path / "b1")
    assert champion.tags["data_fingerprint"] == read_data_record(run)["fingerprint"]
    assert json.loads(champion.tags["evaluation"])["eval/metrics.json"]["melanoma.n_pos"] > 0
    listing = _ok("registry", "list", "--tracking-uri", uri)
    assert "champion" in listing and "challenger" in listing

    # the service resolves both aliases from the registry and verifies each digest
    from dermascan.lifecycle.registry import fetch_bundle
    from dermascan.serving.server import BackgroundServer
    from dermascan.serving.settings import ServeSettings

    path, v1 = fetch_bundle("models:/dermascan@champion", tmp_path / "cache", uri)
    chal, v2 = fetch_bundle("models:/dermascan@challenger", tmp_path / "cache", uri)
    settings = ServeSettings(
        bundle=path, bundle_sha256=v1.digest, challenger=chal, challenger_sha256=v2.digest,
        db=f"sqlite:///{tmp_path / 's.db'}", patient_key=PATIENT_KEY, runtime="onnxruntime", threads=1,
    )  # fmt: skip
    with BackgroundServer(settings) as server:
        health = httpx.get(server.url + "/readyz", timeout=30).json()
        assert health["status"] == "ready"
    wrong = settings.model_copy(update={"bundle_sha256": v2.digest})
    with pytest.raises(RuntimeError, match="stopped while starting"):
        BackgroundServer(wrong).start()
    assert "is not the registered" in capfd.readouterr().err  # uvicorn reports the refusal
    _serving_by_alias_never_imports_torch(uri, tmp_path)

    # promotion moves the champion alias to the challenger
    _ok("registry", "promote", "--tracking-uri", uri)
    assert registry.get_version("models:/dermascan@champion", uri).version == "2"
    with pytest.raises(registry.RegistryError, match="not in the registry"):
        registry.get_version("models:/dermascan@challenger", uri)

    # a registered bundle edited in the artifact store is refused at fetch
    stored = Path(champion.source.removeprefix("file://"))
    manifest = json.loads((stored / "manifest.json").read_text())
    manifest["decision"]["threshold"] = 0.99
    (stored / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="differs from the pinned digest"):
        fetch_bundle("models:/dermascan/1", tmp_path / "cache", uri)


def test_serve_needs_one_model_source() -> None:
    for args in ([], ["--bundle", "b", "--model", "models:/dermascan@champion"]):
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2 and "exactly one of --bundle" in result.output


def test_the_cli_never_imports_mlflow_unless_asked() -> None:
    code = "import sys, dermascan.cli, dermascan.lifecycle.registry; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"  # training without --tracking-uri never reaches the import


def _serving_by_alias_never_imports_torch(uri: str, tmp_path: Path) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(jpeg(64, 48))
    code = f"""
import json, sys, warnings
warnings.simplefilter("ignore")
from dermascan.lifecycle.registry import fetch_bundle
from dermascan.inference import Predictor
path, v = fetch_bundle("models:/dermascan@champion", {str(tmp_path / "cache2")!r}, {uri!r})
with Predictor.from_path(path, runtime="onnxruntime") as p:
    (r,) = p.predict([{str(image)!r}])
print(json.dumps({{"primary": r.primary, "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"primary": result["primary"], "torch": False}
