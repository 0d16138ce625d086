"""The model registry on MLflow: runs with their parameters, per-epoch metrics and artifacts, and bundles registered
as model versions that carry the manifest digest, the dataset fingerprint and the evaluation summary.

Aliases, not the deprecated stages: ``champion`` (what the clinics are answered with) and ``challenger`` (what the
shadow A/B test and the rollout try). ``dermascan serve --model models:/dermascan@champion`` resolves the alias,
downloads the bundle and refuses it unless its manifest digest is the registered one.

The tracking store is SQLite by default (``sqlite:///mlflow.db`` in the working folder; artifacts beside it in
``mlartifacts/``); ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` name a team server or another file. MLflow
(``mlflow-skinny``) is imported inside these functions only: a training run without tracking, and the serving
process of an ONNX bundle, never import it, and nothing here imports torch.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermascan.errors import DermaScanError

F = Callable[..., Any]

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_MODEL = "dermascan"
EXPERIMENT = "dermascan"
ALIASES = ("champion", "challenger")
#: Where a run folder remembers its MLflow run, so that evaluation and export log into the same one.
RUN_LINK_FILE = "mlflow_run.json"

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class RegistryError(DermaScanError, RuntimeError):
    """The registry cannot do what was asked (no MLflow, unknown model or alias, digest mismatch), with the fix."""


def _user_errors(fn: F) -> F:
    """MLflow's own errors (an unknown version, an unreachable server) as a :class:`RegistryError` with the fix."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RegistryError:
            raise
        except Exception as e:
            if type(e).__name__ != "MlflowException" and not type(e).__module__.startswith("mlflow"):
                raise
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RegistryError(
                f"the MLflow registry refused {fn.__name__.replace('_', ' ')}: {first} "
                "(check --tracking-uri / MLFLOW_TRACKING_URI and the model name and version)"
            ) from e

    return wrapper  # type: ignore[return-value]


def resolve_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else SQLite in the working folder."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _client(tracking_uri: str | None):  # type: ignore[no-untyped-def]
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError as e:
        raise RegistryError(
            "MLflow is not installed: pip install 'dermascan[lifecycle]' (mlflow-skinny), or leave out --tracking-uri"
        ) from e
    uri = resolve_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside the database file (MLflow's default is ./mlruns of the caller)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).expanduser().resolve().parent / "mlartifacts").as_uri()
    return None


def _experiment(client: Any, uri: str, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root(uri))


def _flat(d: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a.b.c`` keys (estimates' ``value`` under their own name)."""
    out: dict[str, float] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            out[key] = float(v)
        elif isinstance(v, dict):
            if "value" in v and isinstance(v.get("value"), int | float):
                out[key] = float(v["value"])
            else:
                out.update(_flat(v, f"{key}."))
    return out


def _linked_run(client: Any, run_dir: Path, uri: str, name: str) -> str:
    """The MLflow run of a run folder: the one it links to in this tracking store, else a new one (linked now)."""
    link = run_dir / RUN_LINK_FILE
    if link.is_file():
        data = json.loads(link.read_text())
        if data.get("tracking_uri") == uri:
            return str(data["run_id"])
    from dermascan import _io

    run = client.create_run(_experiment(client, uri), run_name=name)
    _io.write_json(link, {"tracking_uri": uri, "run_id": run.info.run_id})
    return run.info.run_id


@_user_errors
def log_training(run_dir: str | os.PathLike[str], tracking_uri: str | None = None) -> str:
    """Log a finished training run: its config as parameters, ``history.json`` as per-epoch metrics (step =
    epoch), the dataset fingerprint as a tag, and the run's files as artifacts.

    Returns:
        The MLflow run id (also written to ``RUN/mlflow_run.json``).
    """
    from dermascan.runs import (
        CONFIG_FILE,
        DATA_FILE,
        HISTORY_CSV,
        HISTORY_JSON,
        SPLITS_FILE,
        read_config,
        read_data_record,
    )

    client, uri = _client(tracking_uri)
    run = Path(run_dir)
    run_id = _linked_run(client, run, uri, run.resolve().name)
    config = read_config(run)
    logged = client.get_run(run_id).data
    if config is not None:
        params = {k: str(v)[:500] for k, v in config.to_dict().items()}
        # MLflow parameters are immutable: a resumed run (more epochs) keeps the first value and tags the new one
        client.log_batch(run_id, params=_params({k: v for k, v in params.items() if k not in logged.params}))
        for k, v in params.items():
            if k in logged.params and logged.params[k] != v:
                client.set_tag(run_id, f"resumed.{k}", v)
    history = json.loads((run / HISTORY_JSON).read_text()) if (run / HISTORY_JSON).is_file() else []
    done = max((m.step for m in client.get_metric_history(run_id, "val_selection")), default=-1)
    from mlflow.entities import Metric

    metrics = [
        Metric(key, float(value), 0, int(row.get("epoch", i)))
        for i, row in enumerate(history)
        if int(row.get("epoch", i)) > done  # epochs logged before (a resumed run) are not logged twice
        for key, value in row.items()
        if key != "epoch" and isinstance(value, int | float) and value == value  # NaN is not a metric
    ]
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    record = read_data_record(run)
    if record is not None:
        client.set_tag(run_id, "data_fingerprint", record["fingerprint"])
        client.set_tag(run_id, "data_images", str(record["n_images"]))
    for name in (CONFIG_FILE, SPLITS_FILE, HISTORY_CSV, HISTORY_JSON, DATA_FILE):
        if (run / name).is_file():
            client.log_artifact(run_id, str(run / name), "run")
    client.set_terminated(run_id)
    return run_id


def _params(params: dict[str, str]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, v) for k, v in params.items()]


@_user_errors
def log_evaluation(
    run_dir: str | os.PathLike[str], eval_dir: str | os.PathLike[str], tracking_uri: str | None = None
) -> str:
    """Log an evaluation into its training run's MLflow run: the figures of ``metrics.json`` (prefixed with the
    split) and the report, plots and tables as artifacts.

    Returns:
        The MLflow run id.
    """
    client, uri = _client(tracking_uri)
    run, out = Path(run_dir), Path(eval_dir)
    run_id = _linked_run(client, run, uri, run.resolve().name)
    metrics = json.loads((out / "metrics.json").read_text())
    split = metrics.get("split", "test")
    figures = {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "melanoma": {k: metrics["melanoma"][k] for k in ("sensitivity", "specificity", "auroc", "threshold")},
    }
    from mlflow.entities import Metric

    batch = [Metric(f"{split}.{k}", v, 0, 0) for k, v in _flat(figures).items()]
    client.log_batch(run_id, metrics=batch)
    client.log_artifacts(run_id, str(out), f"evaluation/{out.name}")
    client.set_terminated(run_id)
    return run_id


@dataclass
class RegisteredVersion:
    """A registered bundle: the model name and version, its digest and where its files are."""

    name: str
    version: str
    digest: str
    source: str
    run_id: str | None
    tags: dict[str, str]


@_user_errors
def register_bundle(
    bundle: str | os.PathLike[str],
    tracking_uri: str | None = None,
    name: str = DEFAULT_MODEL,
    alias: str | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    gate_report: dict[str, Any] | None = None,
) -> RegisteredVersion:
    """Register a verified bundle as a new model version (files logged as artifacts of its run).

    The version carries tags: ``manifest_digest`` (sha256 of ``manifest.json``, which hashes every file),
    ``data_fingerprint``, ``bundle_version``, ``architecture``, ``evaluation`` (the manifest's evaluation summary,
    JSON) and, when given, ``gates`` (pass/fail). ``alias`` (``challenger``) points at it when given.

    Raises:
        RegistryError: MLflow missing, or the bundle fails verification (as :class:`BundleError`).
    """
    from dermascan.inference.bundle import bundle_digest, load_bundle

    folder = Path(bundle)
    loaded = load_bundle(folder)  # refuse a tampered bundle before it enters the registry
    manifest, digest = loaded.manifest, bundle_digest(folder)
    client, uri = _client(tracking_uri)
    if run_dir is not None:
        run_id = _linked_run(client, Path(run_dir), uri, Path(run_dir).resolve().name)
    else:
        run_id = client.create_run(_experiment(client, uri), run_name=f"export {manifest['version']}").info.run_id
    # one folder per bundle: several exports of one run each keep their own files
    artifact_path = f"bundles/{digest[:16]}"
    client.log_artifacts(run_id, str(folder), artifact_path)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    evaluation = json.dumps(manifest.get("evaluation") or {}, sort_keys=True, default=str)
    tags = {
        "manifest_digest": digest,
        "data_fingerprint": str((manifest.get("fingerprints") or {}).get("data")),
        "bundle_version": str(manifest["version"]),
        "architecture": str(manifest["architecture"]),
        "format": f"{manifest['model']['format']} {manifest['model']['precision']}",
        "evaluation": evaluation[:5000],  # MLflow tag values are bounded; the full summary is in the bundle
    }
    if gate_report is not None:
        tags["gates"] = "pass" if gate_report.get("passed") else "fail: " + ", ".join(gate_report.get("failed", []))
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="DermaScan bundles (7 ISIC 2018 classes)")
    mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    client.set_terminated(run_id)
    if alias is not None:
        set_alias(alias, mv.version, name, tracking_uri)
    return RegisteredVersion(name, str(mv.version), digest, source, run_id, tags)


@_user_errors
def set_alias(alias: str, version: str | int, name: str = DEFAULT_MODEL, tracking_uri: str | None = None) -> None:
    """Point ``alias`` (``champion`` / ``challenger``) at ``version``."""
    if alias not in ALIASES:
        raise RegistryError(f"alias must be one of {ALIASES}, got {alias!r}")
    client, _ = _client(tracking_uri)
    client.set_registered_model_alias(name, alias, str(version))


@_user_errors
def promote(name: str = DEFAULT_MODEL, tracking_uri: str | None = None) -> RegisteredVersion:
    """The challenger becomes the champion (its alias moves; the challenger alias is cleared).

    Raises:
        RegistryError: there is no challenger.
    """
    challenger = get_version(f"models:/{name}@challenger", tracking_uri)
    client, _ = _client(tracking_uri)
    client.set_registered_model_alias(name, "champion", challenger.version)
    client.delete_registered_model_alias(name, "challenger")
    return challenger


@_user_errors
def get_version(model_uri: str, tracking_uri: str | None = None) -> RegisteredVersion:
    """The registered version of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

    Raises:
        RegistryError: a malformed URI, or no such model, alias or version.
    """
    m = _MODEL_URI.match(model_uri)
    if m is None:
        raise RegistryError(f"{model_uri!r} is not a model URI: use models:/dermascan@champion or models:/dermascan/3")
    client, uri = _client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        if m["alias"]:
            mv = client.get_model_version_by_alias(m["name"], m["alias"])
        else:
            mv = client.get_model_version(m["name"], m["version"])
    except MlflowException as e:
        raise RegistryError(
            f"{model_uri} is not in the registry at {uri} ({str(e).splitlines()[0]}): register a bundle with "
            "`dermascan register --bundle B --alias challenger`"
        ) from e
    tags = dict(mv.tags or {})
    if "manifest_digest" not in tags:
        raise RegistryError(
            f"{model_uri} (version {mv.version}) has no manifest_digest tag: register it with dermascan"
        )
    return RegisteredVersion(m["name"], str(mv.version), tags["manifest_digest"], mv.source, mv.run_id, tags)


@_user_errors
def fetch_bundle(
    model_uri: str, cache_dir: str | os.PathLike[str], tracking_uri: str | None = None
) -> tuple[Path, RegisteredVersion]:
    """Download a registered bundle into ``cache_dir/NAME-VERSION`` and verify it against the registered digest.

    Returns:
        ``(bundle folder, version)``.

    Raises:
        RegistryError: unknown model; :class:`~dermascan.inference.bundle.BundleError` when the files or the digest
            do not match what was registered.
    """
    version = get_version(model_uri, tracking_uri)
    _, uri = _client(tracking_uri)
    import shutil

    import mlflow.artifacts

    target = Path(cache_dir) / f"{version.name}-{version.version}"
    shutil.rmtree(target, ignore_errors=True)  # never trust a cached copy: fetch and verify each time
    target.mkdir(parents=True)
    path = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(target), tracking_uri=uri)
    )
    from dermascan.inference.bundle import load_bundle

    load_bundle(path, digest=version.digest)
    return path, version


@_user_errors
def list_versions(name: str = DEFAULT_MODEL, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first, with its aliases and tags."""
    client, _ = _client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException as e:
        raise RegistryError(f"no registered model {name!r}: register a bundle first") from e
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    versions = client.search_model_versions(f"name = '{name}'")
    return [
        {"version": str(v.version), "aliases": sorted(by_version.get(str(v.version), [])), "tags": dict(v.tags or {})}
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True)
    ]


__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "DEFAULT_URI",
    "RUN_LINK_FILE",
    "RegisteredVersion",
    "RegistryError",
    "fetch_bundle",
    "get_version",
    "list_versions",
    "log_evaluation",
    "log_training",
    "promote",
    "register_bundle",
    "resolve_uri",
    "set_alias",
]
