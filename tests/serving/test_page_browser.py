"""The clinician page end to end in headless Chromium (Playwright driving Debian's ``chromium``) against a live
server: sign in, analyse a visit, heat-map controls, bad input, worklist, histopathology feedback, sign out.

The tests write the README's screenshots (docs/img/page_visit.png, docs/img/page_worklist.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.serving.conftest import Live, png

from dermascan.store.models import Feedback, PredictionRow
from dermascan.testing import synthetic_jpeg

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-gpu", "--headless"]  # fmt: skip
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DESKTOP = {"width": 1280, "height": 900}

sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright==1.64.1")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's package 'chromium' (apt-get install -y chromium; "
            "`make test` runs scripts/ensure-system-deps.sh, which does it as root). Never `playwright install`."
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, live: Live):  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies), signed in as clinic-a through the sign-in form."""
    context = browser.new_context(viewport=DESKTOP, base_url=live.url)
    pg = context.new_page()
    pg.goto("/visit")
    assert pg.url.endswith("/sign-in")  # no session: sent to sign in
    pg.get_by_label("Clinic API key").fill(live.keys["clinic-a"])
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_url("**/visit")
    yield pg
    context.close()


def images(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(2):
        path = tmp_path / f"lesion-{i + 1}.jpg"
        path.write_bytes(synthetic_jpeg(320, 240, seed=10 + i))
        out.append(path)
    return out


def test_every_control_has_a_label(page) -> None:  # type: ignore[no-untyped-def]
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select'))
                 .filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id)"""
    )
    assert unlabelled == []
    picker = page.locator("#images")
    assert picker.get_attribute("accept") == "image/png,image/jpeg" and picker.get_attribute("multiple") is not None
    assert page.locator("#camera").get_attribute("capture") == "environment"


def test_visit_of_two_images_shows_bands_heat_maps_and_advice(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Patient ID").fill("P-browser-1")
    page.locator("#images").set_input_files([str(p) for p in images(tmp_path)])
    page.get_by_label("Lesion label (optional)").nth(0).fill("L1")
    page.get_by_label("Body site (optional)").nth(0).fill("back")
    page.get_by_label("Lesion label (optional)").nth(1).fill("L2")
    page.get_by_label("Body site (optional)").nth(1).fill("left forearm")
    page.get_by_role("button", name="Analyse all images").click()
    lesions = page.get_by_test_id("lesion")
    lesions.first.wait_for()
    assert lesions.count() == 2
    for i in range(2):
        card = lesions.nth(i)
        assert card.locator(".band").inner_text() in ("High risk", "Moderate risk", "Low risk", "Not calibrated")
        assert re.search(r"Melanoma risk \(calibrated\): \d+\.\d%", card.inner_text())
        assert "locked melanoma threshold" in card.inner_text()
        assert card.locator(".bars tbody tr").count() == 7
        assert "Recommendation:" in card.inner_text() and "Model version" in card.inner_text()
        assert "Decision support, not a diagnosis." in card.inner_text()
        heat = card.locator("img.overlay")
        assert heat.evaluate("img => img.complete && img.naturalWidth > 0")
        assert card.locator("img.photo").evaluate("img => img.naturalWidth > 0")
    assert "L1 · back" in lesions.nth(0).inner_text() and "L2 · left forearm" in lesions.nth(1).inner_text()

    heat = page.locator("#heat-1")
    page.get_by_label("Heat-map opacity").first.fill("30")
    assert heat.evaluate("img => getComputedStyle(img).opacity") == "0.3"
    page.get_by_label("Show heat map").first.uncheck()
    assert heat.is_hidden()
    page.get_by_label("Show heat map").first.check()
    assert heat.is_visible()
    page.get_by_label("Heat-map opacity").first.press("End")  # keyboard: the slider moves with the keys
    assert heat.evaluate("img => getComputedStyle(img).opacity") == "1"
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "page_visit.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    too_wide = page.evaluate(
        """() => Array.from(document.querySelectorAll('body *'))
                 .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                 .map(e => e.tagName + '.' + e.className)"""
    )
    assert too_wide == [] and page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_bad_images_get_a_message_while_the_others_are_answered(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("not an image at all")
    (tmp_path / "tiny.png").write_bytes(png(16, 16))
    good = images(tmp_path)[0]
    page.get_by_label("Patient ID").fill("P-browser-2")
    page.locator("#images").set_input_files([str(tmp_path / "notes.txt"), str(good), str(tmp_path / "tiny.png")])
    page.get_by_role("button", name="Analyse all images").click()
    page.get_by_test_id("lesion").first.wait_for()
    errors = page.get_by_test_id("lesion-error")
    assert errors.count() == 2 and page.get_by_test_id("lesion").count() == 1
    assert "notes.txt" in errors.nth(0).inner_text() and "is not an image file" in errors.nth(0).inner_text()
    assert "tiny.png" in errors.nth(1).inner_text() and "at least 32 px" in errors.nth(1).inner_text()


def test_worklist_histopathology_and_history(page, live: Live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Patient ID").fill("P-browser-3")
    page.locator("#images").set_input_files([str(p) for p in images(tmp_path)])
    page.get_by_role("button", name="Analyse all images").click()
    page.get_by_test_id("lesion").first.wait_for()
    older = page.get_by_role("link", name="Case record").first.get_attribute("href").rsplit("/", 1)[-1]
    with Session(live.engine) as s, s.begin():  # a random model flags nothing: flag the visit's older lesion
        s.execute(
            update(PredictionRow)
            .where(PredictionRow.id == older)
            .values(melanoma_flag=True, risk_band="high", melanoma_risk=0.62, lesion_id="L7", body_site="back")
        )

    page.get_by_role("link", name="Worklist").click()
    rows = page.get_by_test_id("case-row")
    rows.first.wait_for()
    flags = [("flagged" in (rows.nth(i).get_attribute("class") or "")) for i in range(rows.count())]
    assert flags[0] and not any(flags[1:])  # flagged first, though not the newest
    assert "High risk" in rows.first.inner_text() and "Flagged" in rows.first.inner_text()
    assert rows.first.get_by_role("link").get_attribute("href").endswith(older)
    page.screenshot(path=str(IMG / "page_worklist.png"), full_page=True)

    link = rows.first.get_by_role("link")
    case_id = link.get_attribute("href").rsplit("/", 1)[-1]
    link.click()
    page.get_by_label("Clinician diagnosis").select_option("melanocytic_nevus")
    page.get_by_role("button", name="Record feedback").click()
    page.get_by_text("Feedback recorded.").wait_for()
    page.get_by_label("Histopathology result").select_option("melanoma")
    page.get_by_label("Date of the histopathology report").fill("2026-11-20")
    page.get_by_role("button", name="Record feedback").click()
    page.get_by_text("Feedback recorded.").wait_for()
    history = page.get_by_test_id("history-row")
    assert history.count() == 2
    assert "Melanocytic nevus" in history.nth(0).inner_text() and "Melanoma" in history.nth(1).inner_text()
    with Session(live.engine) as s:
        rows_db = s.scalars(select(Feedback).where(Feedback.prediction_id == case_id).order_by(Feedback.id)).all()
    assert [(f.clinician_label, f.histopathology_label, str(f.histopathology_date)) for f in rows_db] == [
        ("NV", None, "None"),
        (None, "MEL", "2026-11-20"),
    ]
    page.get_by_role("link", name="Worklist").click()
    page.get_by_label("Awaiting histopathology only").check()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**awaiting=true**")
    assert case_id not in page.content()


def test_sign_out_refuses_the_old_session(page, live: Live) -> None:  # type: ignore[no-untyped-def]
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "dermascan_session")
    cookie = next(c for c in page.context.cookies() if c["name"] == "dermascan_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out.").wait_for()
    page.goto("/cases")
    assert page.url.endswith("/sign-in")
    with httpx.Client(base_url=live.url, cookies={"dermascan_session": token}) as c:  # the old cookie, replayed
        r = c.get("/visit")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
