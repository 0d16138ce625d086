"""The operator's monitor page in headless Chromium: an operator signs in through the form, sees the alerts and
the report's plots (each image really loads); the test writes the README's screenshot docs/img/page_monitor.png."""

from __future__ import annotations

from tests.serving.conftest import Live
from tests.serving.test_monitor_page import monitored  # noqa: F401 (the fixture: a service with a drifted report)
from tests.serving.test_page_browser import DESKTOP, IMG, browser  # noqa: F401 (the fixture: Debian's chromium)


def test_an_operator_sees_the_alerts_and_the_plots(browser, monitored: Live) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(viewport=DESKTOP, base_url=monitored.url)
    page = context.new_page()
    try:
        page.goto("/ops/monitor")
        assert page.url.endswith("/sign-in")  # no session: sent to sign in
        page.get_by_label("Clinic API key").fill(monitored.keys["operator"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/visit")
        page.get_by_role("link", name="Monitor").click()
        page.wait_for_url("**/ops/monitor")
        assert "input_drift" in page.content()
        plots = page.locator("img")
        assert plots.count() >= 1
        for i in range(plots.count()):  # every plot was served and decoded, not a broken image
            assert plots.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"), plots.nth(i).get_attribute(
                "src"
            )
        page.screenshot(path=str(IMG / "page_monitor.png"), full_page=True)
    finally:
        context.close()
