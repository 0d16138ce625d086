"""What every page shares: the templates, the signed-in clinic (session cookie), CSRF tokens, refusals as HTML."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from dermascan.serving.errors import ServiceError
from dermascan.serving.state import ServiceState, State
from dermascan.store import web_sessions
from dermascan.store.clinics import Caller

SESSION_COOKIE = "dermascan_session"
SIGN_IN_COOKIE = "dermascan_sign_in"  # double-submit CSRF token of the sign-in form (no session yet)
CSRF_FIELD = "csrf_token"

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

# The page loads nothing from elsewhere; heat maps and photos arrive inline as data: URLs.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
T = TypeVar("T")


class PageError(Exception):
    """A refusal shown to the clinician as a page (status and a message saying what to do)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignInRequiredError(Exception):
    """No live session: a GET goes to the sign-in page, anything else is refused (401)."""


@dataclass(frozen=True)
class SignedIn:
    """The signed-in clinic, its session token and the CSRF token every form of this session carries."""

    caller: Caller
    token: str

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)


def csrf_for(secret: str) -> str:
    """The CSRF token bound to a session (or sign-in) secret: an attacker's page can read neither."""
    return hmac.new(secret.encode(), b"dermascan-csrf", hashlib.sha256).hexdigest()


def check_csrf(expected_secret: str | None, form_value: object) -> None:
    """Raises PageError 403 unless the form carries the token of ``expected_secret``."""
    if (
        not expected_secret
        or not isinstance(form_value, str)
        or not hmac.compare_digest(csrf_for(expected_secret), form_value)
    ):
        raise PageError(403, "This form is out of date or was not sent by this page (CSRF check). Reload and retry.")


def secure_cookies(request: Request, state: ServiceState) -> bool:
    return state.settings.https or request.url.scheme == "https"


def in_store(state: ServiceState, fn: Callable[[Any], T]) -> Callable[[], T]:
    """``fn(session)`` in one transaction, for the thread pool."""
    from dermascan.store.db import transaction

    def run() -> T:
        assert state.sessions is not None
        with transaction(state.sessions) as session:
            return fn(session)

    return run


async def signed_in(request: Request, state: State) -> SignedIn:
    """The clinic of the request's session cookie.

    Raises:
        SignInRequiredError: no cookie, or a signed-out, expired or revoked session.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequiredError
    try:
        caller = await run_in_threadpool(in_store(state, lambda s: web_sessions.caller_of(s, token)))
    except Exception as e:  # the store is down: no way to check the session
        raise PageError(503, "The store is unavailable, so the sign-in cannot be checked. Retry in a minute.") from e
    if caller is None:
        raise SignInRequiredError
    return SignedIn(caller, token)


Page = Annotated[SignedIn, Depends(signed_in)]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return _page_headers(templates.TemplateResponse(request, name, context, status_code=status_code))


def html_page(html: str) -> HTMLResponse:
    """A page the app did not render from its templates (the monitor's report), with the same headers."""
    return _page_headers(HTMLResponse(html))


def _page_headers(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"  # patient results stay out of shared caches
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def refusal(e: ServiceError) -> PageError:
    return PageError(e.status, e.message)


async def page_error(request: Request, exc: PageError) -> HTMLResponse:
    return render(request, "error.html", exc.status, message=exc.message, code=exc.status)


async def sign_in_redirect(request: Request, exc: SignInRequiredError) -> Response:
    if request.method == "GET":
        return RedirectResponse("/sign-in", status_code=303)
    message = "You are not signed in (or were signed out). Sign in again."
    return render(request, "error.html", 401, message=message, code=401)


def utc_day(value: str | None, name: str, next_day: bool = False) -> dt.datetime | None:
    """A ``YYYY-MM-DD`` form value as the start of that UTC day (or of the next one)."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as e:
        raise PageError(422, f"{name}: {value!r} is not a date; use YYYY-MM-DD") from e
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start + dt.timedelta(days=1) if next_day else start


__all__ = [
    "CSRF_FIELD", "SESSION_COOKIE", "SIGN_IN_COOKIE", "Page", "PageError", "SignInRequiredError", "SignedIn",
    "check_csrf", "csrf_for", "in_store", "page_error", "refusal", "render", "secure_cookies", "sign_in_redirect",
    "signed_in", "utc_day",
]  # fmt: skip
