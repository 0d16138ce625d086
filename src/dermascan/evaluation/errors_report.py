"""The error analysis's report: the gallery of missed melanomas (with heat maps) and ``errors.html``.

Draws and lays out the figures of :mod:`dermascan.evaluation.errors`; nothing is computed here.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermascan import _html
from dermascan.evaluation.lesion_size import as_rgb, load_image, resolve_path
from dermascan.evaluation.plots import _new_figure, _save

__all__ = ["NUISANCE_NAMES", "ci_text", "plot_gallery", "write_html"]

NUISANCE_NAMES: dict[str, str] = {
    "hair": "hair", "ruler": "ruler marks", "ink": "ink marks", "bubbles": "gel bubbles",
    "vignette": "dark corners (vignette)", "blur": "blur",
}  # fmt: skip

HeatmapFn = Callable[[str], Any]


def ci_text(d: dict[str, Any]) -> str:
    """``value (lo-hi)`` of an estimate dict, two decimals."""
    return f"{d['value']:.2f} ({d['lo']:.2f}-{d['hi']:.2f})"


def _heatmap(heatmap_fn: HeatmapFn, path: Path | None) -> tuple[np.ndarray | None, str | None]:
    if path is None:
        return None, "no image path"
    try:
        return as_rgb(heatmap_fn(str(path))), None
    except Exception as err:  # an optional picture must not sink the whole analysis
        return None, f"{type(err).__name__}: {err}"


def plot_gallery(
    cases: pd.DataFrame,
    path: Path,
    threshold: float,
    heatmap_fn: HeatmapFn | None,
    image_root: str | os.PathLike[str] | None,
) -> dict[str, str]:
    """Draw the missed melanomas (image, and heat map when given); return heat-map errors by image id."""
    errors: dict[str, str] = {}
    panels = 2 if heatmap_fn is not None else 1
    per_row = 3 if heatmap_fn is not None else 5
    k = len(cases)
    if k == 0:
        fig = _new_figure(5.0, 1.5)
        ax = fig.subplots()
        ax.text(0.5, 0.5, f"No missed melanoma at threshold {threshold:.3g}", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, path)
        return errors
    n_rows = math.ceil(k / per_row)
    n_cols = min(k, per_row) * panels
    fig = _new_figure(2.3 * n_cols, 2.7 * n_rows)
    fig.suptitle(f"Most confidently missed melanomas (lowest p(MEL); threshold {threshold:.3g})")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))  # (rows, cols)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (_, row) in enumerate(cases.iterrows()):
        r, c = divmod(i, per_row)
        image_path = resolve_path(row.get("path"), image_root)
        rgb = load_image(image_path)
        ax = axes[r, c * panels]
        if rgb is None:
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8)
        else:
            ax.imshow(rgb)
        ax.set_title(
            f"{row.get('image_id', row.name)}\npred {row['predicted']} {row['p_predicted']:.2f} | "
            f"p(MEL) {row['p_melanoma']:.3f}",
            fontsize=7,
        )
        if heatmap_fn is not None:
            overlay, error = _heatmap(heatmap_fn, image_path)
            hax = axes[r, c * panels + 1]
            if overlay is None:
                errors[str(row.get("image_id", row.name))] = str(error)
                hax.text(0.5, 0.5, "heat map unavailable", ha="center", va="center", fontsize=8)
            else:
                hax.imshow(overlay)
            hax.set_title("heat map", fontsize=7)
    _save(fig, path)
    return errors


def _cell(d: dict[str, Any]) -> str:
    if d["value"] is None:
        return "—"
    text = ci_text(d)
    return text if d["status"] == "ok" else f"{text} (too small to judge)"


def _group_rows(label: str, groups: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [
        [label, g, v["n"], v["n_melanoma"], _cell(v["error_rate"]), _cell(v["sensitivity"]), _cell(v["specificity"])]
        for g, v in groups.items()
    ]


_GROUP_HEADER = ("factor", "group", "images", "melanomas", "error rate", "sensitivity", "specificity")


def write_html(result: dict[str, Any], path: Path) -> None:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result["findings"])
    sections = [_html.Section("Findings", f"<ul>{items}</ul>")]

    fns = result["false_negatives"]
    meta_keys = sorted({k for f in fns for k in f["metadata"]})
    rows = [[f["image_id"], f["predicted"], f["p_predicted"], f["p_melanoma"],
             *(f["metadata"].get(k) for k in meta_keys)] for f in fns]  # fmt: skip
    body = _html.paragraph(
        f"{result['n_false_negatives']} melanoma(s) with p(MEL) below the threshold {result['threshold']:.3g}, "
        f"most confidently missed first ({result['confident_definition']})."
    )
    sections.append(_html.Section("Missed melanomas", body + _html.table(
        ["image", "predicted", "p(predicted)", "p(MEL)", *meta_keys], rows)))  # fmt: skip
    gallery = _html.image(result["gallery"]["path"], "most confidently missed melanomas")
    if result["gallery"]["heatmap_errors"]:
        gallery += _html.paragraph(f"Heat maps unavailable for {len(result['gallery']['heatmap_errors'])} image(s).")
    sections.append(_html.Section(f"Top {len(result['top_k'])} most confidently missed", gallery))

    size = result["by_size"]
    if size["groups"]:
        note = _html.paragraph(
            f"Size source: {size['source']} ({size.get('unit', '')}); bins: "
            + ", ".join(f"{g} {b}" for g, b in size["bins"].items())
            + f"; {size['n_unknown']} image(s) of unknown size."
        )
        sections.append(
            _html.Section("By lesion size", note + _html.table(_GROUP_HEADER, _group_rows("size", size["groups"])))
        )
    else:
        sections.append(_html.Section("By lesion size", _html.paragraph(result["skipped"].get("size", ""))))
    nuisance_rows = [
        r for flag, v in result["by_nuisance"].items() for r in _group_rows(NUISANCE_NAMES[flag], v["groups"])
    ]
    if nuisance_rows:
        sections.append(
            _html.Section(
                "By nuisance",
                _html.paragraph(
                    "Specificity matters most here: a shortcut (e.g. ink marks learned as a sign of melanoma) shows as "
                    "lower specificity among benign lesions with the nuisance."
                )
                + _html.table(_GROUP_HEADER, nuisance_rows),
            )
        )
    if result["by_dermoscope"] is not None:
        sections.append(_html.Section("By dermoscope", _html.table(
            _GROUP_HEADER, _group_rows("dermoscope", result["by_dermoscope"]["groups"]))))  # fmt: skip
    if result["skipped"]:
        sections.append(_html.Section("Not analysed", _html.table(
            ["analysis", "reason"], sorted(result["skipped"].items()))))  # fmt: skip
    _html.write_page(
        path,
        "DermaScan error analysis",
        sections,
        subtitle=f"{result['n']} images, {result['n_melanoma']} melanomas, threshold {result['threshold']:.3g}; "
        f"intervals are 95% Wilson",
    )
