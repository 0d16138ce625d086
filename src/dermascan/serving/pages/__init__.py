"""The clinician page: server-rendered HTML over the same functions as the JSON API (no second analysis path).

Every script and style is served by the app itself (``/static``): clinics may be offline, and a page showing
patient data must not call third parties (the Content-Security-Policy says so to the browser too).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from dermascan.serving.pages import operator, session, views
from dermascan.serving.pages.common import PageError, SignInRequiredError, page_error, sign_in_redirect

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the page's routes, its static files and the handlers that answer its refusals as HTML."""
    app.include_router(session.router)
    app.include_router(views.router)
    app.include_router(operator.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(PageError, page_error)  # type: ignore[arg-type]
    app.add_exception_handler(SignInRequiredError, sign_in_redirect)  # type: ignore[arg-type]


__all__ = ["install"]
