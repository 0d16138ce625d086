"""The FastAPI app factory: ``create_app(settings)``; ``dermascan serve`` runs it under uvicorn.

The lifespan opens the store, loads the Predictor once and warms it before the server accepts a connection;
``/readyz`` says so. Everything the routes need arrives as ``Annotated`` dependencies (state, caller).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from dermascan.serving import errors
from dermascan.serving.metrics import ServiceMetrics
from dermascan.serving.middleware import RequestMiddleware
from dermascan.serving.pages import install as install_pages
from dermascan.serving.routes import analyze, clinical, ops
from dermascan.serving.settings import ServeSettings
from dermascan.serving.state import ServiceState
from dermascan.store.identity import PatientHasher

log = logging.getLogger("dermascan.serving")

DESCRIPTION = """DermaScan's clinical API (brief section 4.2).

Authenticate with a clinic's key: `Authorization: Bearer <key>` (`dermascan clinic add NAME --db URL` prints one).
Every error answers `{"error": {"code", "message"}}` with a 4xx status (503 when the store or model is unavailable).
"""


def patient_hasher(settings: ServeSettings) -> PatientHasher:
    """The keyed patient hash; with ``dev`` and no key, a throwaway key.

    Raises:
        PatientKeyError: no key and not ``dev``.
    """
    key = settings.patient_key.get_secret_value() if settings.patient_key is not None else None
    if settings.dev and not key and not settings.patient_key_file:
        log.warning("--dev: no patient key set, using a throwaway one (patient hashes change at every start)")
        return PatientHasher.ephemeral()
    return PatientHasher.from_sources(key, settings.patient_key_file)


def create_app(settings: ServeSettings) -> FastAPI:
    """The service for ``settings`` (the model is loaded when the app starts, in its lifespan).

    Raises:
        PatientKeyError: no patient key and not ``--dev`` (checked now, before anything starts).
    """
    state = ServiceState(
        settings=settings, metrics=ServiceMetrics(settings.monitor_dir), hasher=patient_hasher(settings)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        assert state.engine is not None
        state.engine.start()
        try:
            yield
        finally:
            # uvicorn has stopped accepting and answered its open requests; drain what is still queued
            await state.engine.drain()
            await run_in_threadpool(state.close)

    app = FastAPI(title="DermaScan", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.service = state
    errors.install(app)
    app.add_middleware(RequestMiddleware, metrics=state.metrics, max_body_bytes=settings.max_body_bytes)
    for router in (analyze.router, clinical.router, ops.router):
        app.include_router(router)
    install_pages(app)  # the clinician page: HTML over the same functions
    return app


__all__ = ["create_app", "patient_hasher"]
