"""The operator's commands: run the clinical service, manage clinics and their keys, migrate the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermascan.cli._app import DbOpt, KeyRole, TrackingOpt, app, fail

clinic_app = typer.Typer(help="Clinics and their API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The service's database.", no_args_is_help=True)
app.add_typer(clinic_app, name="clinic")
app.add_typer(db_app, name="db")


def _session(db: str):  # type: ignore[no-untyped-def]
    from dermascan.store import check_schema, make_engine, session_factory, transaction

    engine = make_engine(db)
    check_schema(engine)
    return transaction(session_factory(engine))


@app.command()
def serve(
    bundle: Annotated[Path | None, typer.Option(help="Model bundle folder.")] = None,
    model: Annotated[
        str | None, typer.Option(help="A registered model instead of --bundle: models:/dermascan@champion.")
    ] = None,
    challenger: Annotated[
        str | None, typer.Option(help="Challenger bundle folder or registered model (models:/dermascan@challenger).")
    ] = None,
    tracking_uri: TrackingOpt = None,
    model_cache: Annotated[Path, typer.Option(help="Where registered bundles are downloaded.")] = Path(
        "dermascan-data/models"
    ),
    db: Annotated[str | None, typer.Option(help="Database URL (default: SQLite in the data folder).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings (see ServeSettings).")] = None,
    dev: Annotated[bool, typer.Option(help="Development: a throwaway patient key if none is set.")] = False,
    patient_key_file: Annotated[Path | None, typer.Option(help="File holding the patient-hash key.")] = None,
    shadow_share: Annotated[
        float | None, typer.Option(help="Share of answers also run on the challenger, stored, never shown.")
    ] = None,
    canary_share: Annotated[
        float | None, typer.Option(help="Share answered by the challenger (a rollout's stored share wins).")
    ] = None,
    batch_max_size: Annotated[
        int | None, typer.Option(help="Micro-batcher: most images a call (default 8; 1: off).")
    ] = None,
    batch_max_wait_ms: Annotated[
        float | None, typer.Option(help="Micro-batcher: longest wait for more after the first request, ms (default 0).")
    ] = None,
    queue_size: Annotated[
        int | None, typer.Option(help="Requests that may wait; one more is 503 (default 64).")
    ] = None,
) -> None:
    """The clinical HTTP service (one uvicorn worker per process; see /docs). SIGTERM drains, then exits.

    With --model (and a models:/ --challenger) the bundle comes from the registry and is refused unless its
    manifest digest is the registered one.
    """
    from dermascan.serving.server import serve as run_server
    from dermascan.serving.settings import ServeSettings

    if (bundle is not None and model is not None) or (bundle is None and model is None and config is None):
        raise fail("pass exactly one of --bundle DIR or --model models:/NAME@ALIAS")
    pinned: dict[str, object] = {}
    for key, ref in (("bundle", model), ("challenger", challenger)):
        if ref is not None and ref.startswith("models:/"):
            from dermascan.lifecycle.registry import fetch_bundle

            path, version = fetch_bundle(ref, model_cache, tracking_uri)
            pinned[key], pinned[f"{key}_sha256"] = path, version.digest
            typer.echo(f"{key}: {ref} = {version.name} version {version.version} ({version.digest[:12]})", err=True)
        elif ref is not None:
            pinned[key] = Path(ref)
    settings = ServeSettings.load(
        config,
        bundle=bundle,
        db=db,
        host=host,
        port=port,
        dev=dev or None,
        patient_key_file=patient_key_file,
        shadow_share=shadow_share,
        canary_share=canary_share,
        batch_max_size=batch_max_size,
        batch_max_wait_ms=batch_max_wait_ms,
        queue_size=queue_size,
        **pinned,
    )
    run_server(settings)


@clinic_app.command("add")
def clinic_add(
    name: Annotated[str, typer.Argument(help="Clinic name; its id is the lower-case slug.")],
    db: DbOpt,
    role: Annotated[
        KeyRole,
        typer.Option(help="clinic: its own cases; operator: also the monitoring page (/ops/monitor)."),
    ] = "clinic",
) -> None:
    """Add a clinic (or a key to an existing one) and print the new API key once, on its own line."""
    from dermascan.store.clinics import add_clinic

    with _session(db) as session:
        clinic, key = add_clinic(session, name, role)
    typer.echo(
        f"clinic_id: {clinic.id}, role: {role}  (the key below is shown once; only its hash is stored)", err=True
    )
    typer.echo(key)


@clinic_app.command("revoke")
def clinic_revoke(
    clinic_id: Annotated[str, typer.Argument(help="The clinic's id.")],
    db: DbOpt,
    key: Annotated[
        str | None, typer.Option(help="Revoke only the key with this prefix (its first 12 characters).")
    ] = None,
) -> None:
    """Revoke a clinic's keys (all, or one by its prefix)."""
    from dermascan.store.clinics import revoke

    with _session(db) as session:
        n = revoke(session, clinic_id, key[:12] if key else None)
    typer.echo(f"revoked {n} key(s) of {clinic_id}")


@clinic_app.command("list")
def clinic_list(db: DbOpt) -> None:
    """Clinics and their active keys."""
    from dermascan.store.clinics import list_clinics

    with _session(db) as session:
        for clinic, active in list_clinics(session):
            typer.echo(f"{clinic.id}\t{clinic.name}\t{active} active key(s)")


@db_app.command("upgrade")
def db_upgrade(db: DbOpt) -> None:
    """Create or migrate the database to this version's schema (safe on an up-to-date one)."""
    from dermascan.store import make_engine, upgrade

    before, after = upgrade(make_engine(db))
    typer.echo(f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@app.command()
def analyze(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG/PNG).")],
    url: Annotated[list[str], typer.Option("--url", help="Service URL; repeat for fallbacks (edge first).")],
    key: Annotated[str, typer.Option(envvar="DERMASCAN_API_KEY", help="The clinic's API key.")],
    clinic: Annotated[str, typer.Option(help="Clinic id.")],
    patient: Annotated[str, typer.Option(help="Patient id (hashed by the service, never stored in clear).")],
    timeout: Annotated[float, typer.Option(help="Seconds per attempt before the next URL.")] = 10.0,
    retries: Annotated[int, typer.Option(help="Rounds over all URLs after a failed one.")] = 2,
) -> None:
    """Send images to the service (edge -> cloud fallback) and print one JSON line per image."""
    import json

    from dermascan.client import Client, ClientError

    with Client(url, key, timeout=timeout, retries=retries) as client:
        for image in images:
            try:
                answer = client.analyze(image, clinic, patient)
            except (ClientError, OSError) as e:
                raise fail(f"{image}: {e}") from e
            answer.pop("attention_map", None)
            typer.echo(json.dumps({"image": str(image), "url": client.last_url, **answer}))
