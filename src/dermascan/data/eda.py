"""Exploratory data analysis (brief 3.2): class balance, sample images, colour statistics, metadata.

`run_eda` computes a JSON-ready summary, draws the plots and writes an HTML page that shows them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dermascan import _html, _io
from dermascan.data.io import image_size, load_image
from dermascan.data.readers import DermoscopyIndex
from dermascan.data.schema import NUISANCE_FLAGS
from dermascan.taxonomy import CLASSES, DISPLAY_NAMES

CATEGORICAL_METADATA = ("sex", "localization", "fitzpatrick", "dermoscope", "dx_type")
NUMERIC_METADATA = ("age", "diameter_mm")
# Colour statistics come from a sample, downscaled: exact enough, and seconds rather than minutes on 10k images.
_STATS_SIDE = 128


def summarize(index: DermoscopyIndex, max_images: int = 400, seed: int = 0) -> tuple[dict[str, Any], np.ndarray]:
    """The EDA figures of a dataset.

    Returns:
        ``(summary, histograms)``: the JSON-ready summary and (3, 256) per-channel pixel counts of the
        sampled images.
    """
    frame = index.frame
    counts = index.class_counts()
    present = [c for c in counts.values() if c > 0]
    rng = np.random.default_rng(seed)
    sample = frame.iloc[np.sort(rng.choice(len(frame), size=min(max_images, len(frame)), replace=False))]

    def pixels(path: str) -> np.ndarray:
        img = load_image(path)
        img.thumbnail((_STATS_SIDE, _STATS_SIDE))
        return np.asarray(img, dtype=np.uint8).reshape(-1, 3)

    with ThreadPoolExecutor(max_workers=4) as pool:
        px = list(pool.map(pixels, sample["path"]))
        sizes = list(pool.map(image_size, frame["path"]))
    allpx = np.concatenate(px).astype(np.float64) / 255.0  # (P, 3)
    hist = np.stack([np.bincount((allpx[:, c] * 255).round().astype(int), minlength=256) for c in range(3)])
    widths, heights = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
    size_counts = pd.Series([f"{w}x{h}" for w, h in sizes]).value_counts()

    per_lesion = frame.groupby("lesion_id").size()
    summary: dict[str, Any] = {
        "root": str(index.root),
        "layout": index.layout,
        "n_images": len(frame),
        "class_counts": counts,
        "class_fractions": {c: counts[c] / len(frame) for c in CLASSES},
        "imbalance_ratio": max(present) / min(present),
        "absent_classes": [c for c in CLASSES if counts[c] == 0],
        "channel_mean": allpx.mean(axis=0).tolist(),
        "channel_std": allpx.std(axis=0).tolist(),
        "channel_stats_images": len(sample),
        "image_size": {
            "width": _numeric(pd.Series(widths)),
            "height": _numeric(pd.Series(heights)),
            "most_common": size_counts.head(5).to_dict(),
        },
        "lesions": {
            "n_lesions": int(per_lesion.size),
            "lesions_with_several_images": int((per_lesion > 1).sum()),
            "max_images_per_lesion": int(per_lesion.max()),
            "lesion_ids_available": index.has_lesion_ids,
        },
        "metadata": _metadata_distributions(frame),
        "skipped": [{"item": i, "reason": r} for i, r in index.skipped],
    }
    return summary, hist


def _numeric(s: pd.Series) -> dict[str, float | int]:
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return {"count": 0}
    return {
        "count": int(s.size),
        "mean": float(s.mean()),
        "std": float(s.std(ddof=0)),
        "min": float(s.min()),
        "median": float(s.median()),
        "max": float(s.max()),
    }


def _metadata_distributions(frame: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in CATEGORICAL_METADATA:
        if col in frame.columns:
            vc = frame[col].fillna("unknown").astype(str).value_counts()
            out[col] = {str(k): int(v) for k, v in vc.items()}
    for col in NUMERIC_METADATA:
        if col in frame.columns:
            out[col] = _numeric(frame[col])
    flags = [c for c in NUISANCE_FLAGS if c in frame.columns]
    if flags:
        # Rate per class, so correlations between nuisances and diagnoses (shortcuts) are visible.
        out["nuisance_rate_by_class"] = {
            f: {c: float(frame.loc[frame["dx"] == c, f].mean()) for c in CLASSES if (frame["dx"] == c).any()}
            for f in flags
        }
    return out


# --- plots --------------------------------------------------------------------------------------------


def plot_class_distribution(counts: dict[str, int], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.bar(list(counts), list(counts.values()), color=["#b42318" if c == "MEL" else "#4e79a7" for c in counts])
    ax.bar_label(bars, fontsize=8)
    ax.set_ylabel("images")
    ax.set_title("Class distribution (melanoma in red)")
    return _save(fig, path)


def plot_samples(index: DermoscopyIndex, path: Path, per_class: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    present = [c for c in CLASSES if (index.frame["dx"] == c).any()]
    fig, axes = plt.subplots(len(present), per_class, figsize=(2.4 * per_class, 2.0 * len(present)), squeeze=False)
    for r, code in enumerate(present):
        rows = index.frame[index.frame["dx"] == code]
        picks = rows.iloc[rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)]
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(picks):
                img = load_image(picks["path"].iat[c])
                img.thumbnail((320, 320))
                ax.imshow(img)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(code, fontsize=11, rotation=0, labelpad=28)
    fig.suptitle(f"{per_class} random samples per class", fontsize=10)
    return _save(fig, path)


def plot_channel_histograms(hist: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for c, (name, colour) in enumerate(zip("RGB", ("#d62728", "#2ca02c", "#1f77b4"), strict=True)):
        ax.plot(np.arange(256), hist[c] / hist[c].sum(), color=colour, label=name)
    ax.set_xlabel("pixel value")
    ax.set_ylabel("fraction of pixels")
    ax.set_title("Per-channel intensity histograms")
    ax.legend()
    return _save(fig, path)


def plot_metadata(frame: pd.DataFrame, path: Path) -> Path | None:
    cols = [c for c in (*NUMERIC_METADATA, *CATEGORICAL_METADATA) if c in frame.columns]
    if not cols:
        return None
    ncols = min(3, len(cols))
    nrows = -(-len(cols) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, cols, strict=False):
        values = frame[col]
        if col in NUMERIC_METADATA:
            ax.hist(pd.to_numeric(values, errors="coerce").dropna(), bins=20, color="#4e79a7")
        else:
            vc = values.fillna("unknown").astype(str).value_counts().head(12)
            ax.barh(vc.index[::-1], vc.to_numpy()[::-1], color="#4e79a7")
            ax.tick_params(axis="y", labelsize=7)
        ax.set_title(col)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.suptitle("Metadata distributions")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    with _io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


# --- the command ----------------------------------------------------------------------------------------


def run_eda(index: DermoscopyIndex, out_dir: str | Path, max_images: int = 400, seed: int = 0) -> dict[str, Any]:
    """Write ``eda.json``, the PNG plots and ``eda.html`` into ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, hist = summarize(index, max_images=max_images, seed=seed)
    plots = {
        "class_distribution.png": plot_class_distribution(summary["class_counts"], out / "class_distribution.png"),
        "samples.png": plot_samples(index, out / "samples.png", seed=seed),
        "channel_histograms.png": plot_channel_histograms(hist, out / "channel_histograms.png"),
    }
    meta_plot = plot_metadata(index.frame, out / "metadata.png")
    if meta_plot is not None:
        plots["metadata.png"] = meta_plot
    summary["plots"] = sorted(plots)
    _io.write_json(out / "eda.json", summary)
    _write_html(summary, out / "eda.html")
    return summary


def _write_html(s: dict[str, Any], path: Path) -> Path:
    sec, h = _html.Section, _html
    counts = s["class_counts"]
    lesions = s["lesions"]
    sections = [
        sec(
            "Classes",
            h.table(
                ["class", "name", "images", "share"],
                [(c, DISPLAY_NAMES[c], counts[c], s["class_fractions"][c]) for c in CLASSES],
            )
            + h.paragraph(
                f"Imbalance ratio (largest / smallest class present): {s['imbalance_ratio']:.1f}. "
                + (f"Absent classes: {', '.join(s['absent_classes'])}." if s["absent_classes"] else "")
            )
            + h.image("class_distribution.png", "class distribution"),
        ),
        sec("Samples", h.image("samples.png", "three samples per class")),
        sec(
            "Colour",
            h.table(
                ["channel", "mean", "std"],
                [(c, m, d) for c, m, d in zip("RGB", s["channel_mean"], s["channel_std"], strict=True)],
            )
            + h.paragraph(f"From {s['channel_stats_images']} sampled images, downscaled to {_STATS_SIDE} px.")
            + h.image("channel_histograms.png", "channel histograms"),
        ),
        sec("Image sizes", h.table(["size", "images"], list(s["image_size"]["most_common"].items()))),
        sec(
            "Lesions",
            h.paragraph(
                f"{lesions['n_lesions']} lesions; {lesions['lesions_with_several_images']} have several images "
                f"(up to {lesions['max_images_per_lesion']}). Splits are grouped by lesion so none crosses splits."
                + (
                    ""
                    if lesions["lesion_ids_available"]
                    else " No lesion ids in this folder: each image counts as one."
                )
            ),
        ),
    ]
    if "metadata.png" in s["plots"]:
        sections.append(sec("Metadata", h.image("metadata.png", "metadata distributions")))
    if s["skipped"]:
        sections.append(sec("Skipped", h.table(["item", "reason"], [(d["item"], d["reason"]) for d in s["skipped"]])))
    return _html.write_page(
        path, "Dataset overview", sections, subtitle=f"{s['root']} ({s['layout']} layout, {s['n_images']} images)"
    )
