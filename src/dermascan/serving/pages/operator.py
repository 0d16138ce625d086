"""The operator's page: the latest monitor report (``monitor_dir``) for keys of the ``operator`` role only.

``/ops/monitor`` shows the last window's figures, the alerts and the plots; ``/ops/monitor/report`` is the full
report as ``dermascan monitor`` wrote it, ``/ops/monitor/<plot>.png`` its plots. A clinic key is refused (403):
the report aggregates every clinic.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from dermascan.monitoring.files import HTML_FILE
from dermascan.serving.monitor_report import read_report
from dermascan.serving.pages.common import Page, PageError, html_page, render
from dermascan.serving.state import State

router = APIRouter(include_in_schema=False)


def _operator(page: Page) -> None:
    if not page.caller.is_operator:
        raise PageError(403, "The monitoring page is for operator keys; this key belongs to a clinic.")


@router.get("/ops/monitor")
async def monitor_page(request: Request, state: State, page: Page) -> Response:
    _operator(page)
    report = await run_in_threadpool(read_report, state.settings.monitor_dir)
    return render(request, "monitor.html", page=page, report=report, last=(report or {}).get("windows", [None])[-1])


@router.get("/ops/monitor/report")
async def monitor_full(state: State, page: Page) -> Response:
    _operator(page)
    folder = state.settings.monitor_dir
    if folder is None or not (folder / HTML_FILE).is_file():
        raise PageError(404, "No monitor report yet: run `dermascan monitor --db URL --bundle B --out MONITOR_DIR`.")
    return html_page((folder / HTML_FILE).read_text())


@router.get("/ops/monitor/{name}")
async def monitor_plot(name: str, state: State, page: Page) -> Response:
    _operator(page)
    report = await run_in_threadpool(read_report, state.settings.monitor_dir)
    plots = set((report or {}).get("plots", {}).values())
    if name not in plots or state.settings.monitor_dir is None:  # only the report's own plots, never a path
        raise PageError(404, f"no plot {name!r} in the latest monitor report")
    return FileResponse(
        state.settings.monitor_dir / name, media_type="image/png", headers={"Cache-Control": "no-store"}
    )


__all__ = ["router"]
