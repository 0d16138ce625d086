"""The clinician page's refusals over plain HTTP against a live server: no session, a wrong or missing CSRF
token, another clinic's case, a revoked key's session; and the session cookie's flags."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.serving.conftest import Live, jpeg

from dermascan.store import clinics, db
from dermascan.store.models import Feedback, WebSession

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def signed_in(live: Live, key: str) -> tuple[httpx.Client, str]:
    """A cookie-keeping client signed in with ``key``, and the session's CSRF token."""
    c = httpx.Client(base_url=live.url, timeout=60)
    live.clients.append(c)
    form = c.get("/sign-in")
    r = c.post("/sign-in", data={"csrf_token": csrf_of(form.text), "api_key": key})
    assert r.status_code == 303 and r.headers["location"] == "/visit", r.text
    visit = c.get("/visit")
    assert visit.status_code == 200
    return c, csrf_of(visit.text)


def feedback_rows(live: Live) -> int:
    with Session(live.engine) as s:
        return s.scalar(select(func.count()).select_from(Feedback)) or 0


@pytest.fixture(scope="module")
def case_ids(live: Live) -> dict[str, str]:
    out = {}
    for clinic in ("clinic-a", "clinic-b"):
        r = live.analyze(clinic, image=jpeg(seed=3))
        assert r.status_code == 200, r.text
        out[clinic] = r.json()["prediction_id"]
    return out


def test_without_a_session_pages_redirect_to_sign_in_and_posts_are_refused(live: Live, case_ids: dict) -> None:
    c = httpx.Client(base_url=live.url, timeout=60)
    live.clients.append(c)
    for path in ("/visit", "/cases", f"/cases/{case_ids['clinic-a']}", "/"):
        r = c.get(path, follow_redirects=True)
        assert r.url.path == "/sign-in" and r.status_code == 200, path
    r = c.post("/visit", files={"images": ("a.jpg", jpeg(), "image/jpeg")}, data={"patient_id": "P-1"})
    assert r.status_code == 401 and "not signed in" in r.text.lower()
    before = feedback_rows(live)
    r = c.post(f"/cases/{case_ids['clinic-a']}/feedback", data={"histopathology": "melanoma"})
    assert r.status_code == 401 and feedback_rows(live) == before
    # A forged cookie is no session either.
    c.cookies.set("dermascan_session", "forged-token")
    assert c.get("/visit").status_code == 303


def test_sign_in_needs_a_valid_key_and_its_csrf_token(live: Live) -> None:
    c = httpx.Client(base_url=live.url, timeout=60)
    live.clients.append(c)
    token = csrf_of(c.get("/sign-in").text)
    r = c.post("/sign-in", data={"api_key": live.keys["clinic-a"]})  # no token
    assert r.status_code == 403 and "CSRF" in r.text and "dermascan_session" not in r.headers.get("set-cookie", "")
    r = c.post("/sign-in", data={"csrf_token": "0" * 64, "api_key": live.keys["clinic-a"]})
    assert r.status_code == 403
    for key in ("dsk_not-a-key", live.keys["revoked"]):
        r = c.post("/sign-in", data={"csrf_token": token, "api_key": key})
        assert r.status_code == 401 and "Unknown or revoked clinic key" in r.text


def test_session_cookie_is_httponly_strict_and_stored_hashed(live: Live) -> None:
    c = httpx.Client(base_url=live.url, timeout=60)
    live.clients.append(c)
    form = c.get("/sign-in")
    r = c.post("/sign-in", data={"csrf_token": csrf_of(form.text), "api_key": live.keys["clinic-a"]})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; `https: true` marks it Secure
    token = c.cookies["dermascan_session"]
    with Session(live.engine) as s:
        hashes = set(s.scalars(select(WebSession.token_hash)))
    assert token not in hashes and len(hashes) >= 1  # only the SHA-256 is kept
    page = c.get("/visit")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and page.headers["cache-control"] == "no-store"
    assert 'src="/static/page.js"' in page.text and c.get("/static/page.js").status_code == 200


def test_wrong_or_missing_csrf_is_refused_and_changes_nothing(live: Live, case_ids: dict) -> None:
    c, token = signed_in(live, live.keys["clinic-a"])
    case = case_ids["clinic-a"]
    before = feedback_rows(live)
    for data in ({"histopathology": "melanoma"}, {"histopathology": "melanoma", "csrf_token": "f" * 64}):
        r = c.post(f"/cases/{case}/feedback", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    # Another session's token is wrong too.
    _, other_token = signed_in(live, live.keys["clinic-a"])
    assert other_token != token
    r = c.post(f"/cases/{case}/feedback", data={"histopathology": "melanoma", "csrf_token": other_token})
    assert r.status_code == 403
    assert feedback_rows(live) == before
    r = c.post("/visit", files={"images": ("a.jpg", jpeg(), "image/jpeg")}, data={"patient_id": "P-1"})
    assert r.status_code == 403
    assert c.post("/sign-out", data={}).status_code == 403 and c.get("/visit").status_code == 200  # still signed in
    # With its token, the same feedback goes through.
    r = c.post(f"/cases/{case}/feedback", data={"histopathology": "not_biopsied", "csrf_token": token})
    assert r.status_code == 303 and feedback_rows(live) == before + 1


def test_another_clinics_case_is_not_found(live: Live, case_ids: dict) -> None:
    c, token = signed_in(live, live.keys["clinic-a"])
    theirs = case_ids["clinic-b"]
    r = c.get(f"/cases/{theirs}")
    assert r.status_code == 404 and theirs in r.text and "for this clinic" in r.text
    assert c.get("/cases/no-such-case").status_code == 404
    before = feedback_rows(live)
    r = c.post(f"/cases/{theirs}/feedback", data={"histopathology": "melanoma", "csrf_token": token})
    assert r.status_code == 404 and feedback_rows(live) == before
    listed = c.get("/cases").text
    assert case_ids["clinic-a"] in listed and theirs not in listed


def test_feedback_form_errors_are_shown_on_the_case(live: Live, case_ids: dict) -> None:
    c, token = signed_in(live, live.keys["clinic-a"])
    r = c.post(f"/cases/{case_ids['clinic-a']}/feedback", data={"csrf_token": token})
    assert r.status_code == 422 and "give clinician_diagnosis and/or histopathology" in r.text
    r = c.post(f"/cases/{case_ids['clinic-a']}/feedback", data={"csrf_token": token, "histopathology": "nonsense"})
    assert r.status_code == 422 and "histopathology" in r.text


def test_revoking_the_key_ends_its_sessions(live: Live) -> None:
    with db.transaction(db.session_factory(live.engine)) as s:
        _, key = clinics.add_clinic(s, "Clinic D")
    c, _ = signed_in(live, key)
    with db.transaction(db.session_factory(live.engine)) as s:
        clinics.revoke(s, "clinic-d")
    r = c.get("/visit")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
