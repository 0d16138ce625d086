"""Signing in with the clinic's API key and signing out.

The key travels once, in the sign-in form; the browser then holds an opaque session token in an HttpOnly,
SameSite=Strict cookie (Secure over https), and the store keeps only the token's SHA-256.
"""

from __future__ import annotations

import datetime as dt
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dermascan.serving.pages.common import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Page,
    PageError,
    check_csrf,
    csrf_for,
    in_store,
    render,
    secure_cookies,
)
from dermascan.serving.state import State
from dermascan.store import web_sessions

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/visit", status_code=303)


@router.get("/sign-in")
async def sign_in_form(request: Request, state: State, signed_out: bool = False) -> Response:
    secret = secrets.token_urlsafe(32)
    response = render(request, "sign_in.html", csrf=csrf_for(secret), signed_out=signed_out)
    response.set_cookie(
        SIGN_IN_COOKIE, secret, httponly=True, samesite="strict", secure=secure_cookies(request, state), max_age=3600
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request, state: State) -> Response:
    form = await request.form(max_files=0, max_fields=4)
    check_csrf(request.cookies.get(SIGN_IN_COOKIE), form.get(CSRF_FIELD))
    key = str(form.get("api_key") or "").strip()
    lifetime = dt.timedelta(hours=state.settings.session_hours)
    try:
        opened = await run_in_threadpool(in_store(state, lambda s: web_sessions.open_session(s, key, lifetime)))
    except Exception as e:
        raise PageError(503, "The store is unavailable, so you cannot sign in now. Retry in a minute.") from e
    if opened is None:
        secret = request.cookies.get(SIGN_IN_COOKIE, "")
        return render(
            request,
            "sign_in.html",
            401,
            csrf=csrf_for(secret),
            error="Unknown or revoked clinic key. Paste the key your operator gave you (it starts with dsk_).",
        )
    token, _ = opened
    response = RedirectResponse("/visit", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, state),
        max_age=int(lifetime.total_seconds()),
    )
    response.delete_cookie(SIGN_IN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, state: State, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=2)
    check_csrf(page.token, form.get(CSRF_FIELD))
    await run_in_threadpool(in_store(state, lambda s: web_sessions.close_session(s, page.token)))
    response = RedirectResponse("/sign-in?signed_out=true", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=secure_cookies(request, state))
    return response
