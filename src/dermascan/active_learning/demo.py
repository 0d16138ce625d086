"""The demo's active-learning step: rank the winner's test pool for labelling, and the cost table."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from dermascan import _html


def demo_step(
    out: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    pool_dir: str | os.PathLike[str] | None = None,
    budget: int = 10,
    strategy: str = "melanoma-boundary",
    bench: str | os.PathLike[str] | None = None,
    al_simulation: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Rank a pool with the run's model and write the cost model; returns what the demo page shows.

    Args:
        out: folder for ``ranking.csv`` and ``cost/`` (cost.md, cost.html, cost.json).
        run_dir: an evaluated run (``melanoma-boundary`` reads its locked threshold).
        pool_dir: an image folder or a store URL; ``None`` ranks the run's own test split.
        budget: images to rank.
        strategy: acquisition strategy.
        bench: a ``dermascan bench --out`` JSON for the CPU-clinic scenario (skipped when missing).
        al_simulation: a ``dermascan active-learn simulate`` output for the measured saving (else assumed).

    Returns:
        ``{"strategy", "pool", "pool_size", "ranking_csv", "top", "cost_md", "cost_html", "cost_total",
        "scenarios"}`` (``top``: the first five rows of the ranking).
    """
    from dermascan.active_learning.pool import split_pool
    from dermascan.active_learning.ranking import rank_pool
    from dermascan.cost import write_cost_report

    out = Path(out)
    pool = split_pool(run_dir) if pool_dir is None else pool_dir
    frame, found = rank_pool(run_dir, pool, budget, strategy, out=out / "ranking.csv")
    bench = bench if bench is not None and Path(bench).is_file() else None
    model = write_cost_report(out / "cost", al_simulation=al_simulation, bench=bench)
    top = frame.head(5).assign(image=frame["image"].map(lambda p: Path(p).name))
    return {
        "strategy": strategy,
        "pool": found.source,
        "pool_size": len(found.names),
        "ranking_csv": str(out / "ranking.csv"),
        "top": top.to_dict(orient="records"),
        "cost_md": str(out / "cost" / "cost.md"),
        "cost_html": str(out / "cost" / "cost.html"),
        "cost_total": model["baseline"]["total"],
        "cost_per_scan": model["baseline"]["cost_per_scan"],
        "scenarios": [{"name": s["name"], "total": s.get("total"), "source": s["source"]} for s in model["scenarios"]],
    }


def demo_html(step: dict[str, Any]) -> str:
    """An HTML fragment of :func:`demo_step`'s result for the demo page."""
    rows = [[r["rank"], r["image"], r["score"], r["p_melanoma"], r["predicted"], r["why"]] for r in step["top"]]
    scenarios = [
        [s["name"], "—" if s["total"] is None or math.isnan(s["total"]) else f"${s['total']:,.0f}", s["source"]]
        for s in step["scenarios"]
    ]
    return (
        _html.paragraph(
            f"The {step['pool_size']} images of {step['pool']}, ranked by {step['strategy']}: the first to send for "
            f"histopathology (whole ranking: {Path(step['ranking_csv']).name})."
        )
        + _html.table(["rank", "image", "score", "p(MEL)", "predicted", "why"], rows)
        + _html.paragraph(
            f"Monthly cost (brief section 4.8): ${step['cost_total']:,.0f}, ${step['cost_per_scan']:.4f} per scan "
            f"(full table: cost/cost.html)."
        )
        + _html.table(["scenario", "monthly cost", "source"], scenarios)
    )


__all__ = ["demo_html", "demo_step"]
