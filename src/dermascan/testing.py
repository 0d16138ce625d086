"""Small, deterministic stand-ins for real models and photos, for tests and benchmarks.

Nothing here is used by serving or training: random-weight runs and bundles exported through the real
export path (:func:`random_bundle`), and synthetic JPEGs that decode like dermoscopy photos
(:func:`synthetic_jpeg`). No data or weights are downloaded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermascan.runs import BEST_CHECKPOINT, OPERATING_POINT_FILE

__all__ = [
    "DEMO_OPERATING_POINT",
    "MONITOR_PRIORS",
    "monitored_bundle",
    "random_bundle",
    "random_run",
    "synthetic_jpeg",
]

#: The class mix of :func:`monitored_bundle`'s training set (melanoma-enriched, so a few dozen validation
#: melanomas lock the threshold); simulated clinics sending the same mix are steady traffic.
MONITOR_PRIORS = {"MEL": 0.3, "NV": 0.4, "BCC": 0.06, "AKIEC": 0.06, "BKL": 0.08, "DF": 0.05, "VASC": 0.05}


def synthetic_jpeg(width: int = 1024, height: int = 768, seed: int = 0, quality: int = 90) -> bytes:
    """A smooth, skin-coloured JPEG with a dark blob, ``width x height``: realistic to decode (noise-free
    photos compress like this), no data needed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * (0.45 + 0.1 * rng.random()), height * (0.45 + 0.1 * rng.random())
    r = np.hypot((xx - cx) / (0.22 * width), (yy - cy) / (0.25 * height))
    lesion = np.clip(1.2 - r, 0, 1)[..., None]  # (H, W, 1)
    skin = np.array([224, 172, 150], np.float32)
    mole = np.array([92, 56, 40], np.float32)
    img = skin * (1 - lesion) + mole * lesion + rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def random_run(
    out_dir: str | os.PathLike[str], arch: str, image_size: int | None = None, seed: int = 0, jpeg_draft: bool = True
) -> Path:
    """A run folder with a random-weight checkpoint of ``arch`` (``best.ckpt``), for timing and tests.

    The head is re-drawn with a wide spread (std 0.5): torchvision ViTs start with a zero head, whose constant
    logits make parity and heat maps meaningless, and a default-initialised head gives near-uniform
    probabilities whose argmax flips at the slightest rounding, unlike a trained model's, so reduced-precision
    parity (decisions) would test the initialisation instead of the export.

    ``jpeg_draft=False`` gives the model full-scale JPEG decoding (:attr:`~dermascan.config.Preprocessing.jpeg_draft`
    ``None``), as every model had before draft decoding: the "before" of a benchmark.

    Returns:
        The run folder.
    """
    import torch

    from dermascan.models import create_model, model_info
    from dermascan.taxonomy import CLASSES

    torch.manual_seed(seed)
    model = create_model(arch, weights="none", image_size=image_size).eval()
    if not jpeg_draft:
        model.preprocessing = dataclasses.replace(model.preprocessing, jpeg_draft=None)
    head = model.get_submodule(model_info(arch)["classifier"])
    torch.nn.init.normal_(head.weight, std=0.5)
    torch.nn.init.normal_(head.bias, std=0.1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {
            "arch": arch,
            "classes": list(CLASSES),
            "preprocessing": model.preprocessing.to_dict(),
            "config": {"arch": arch, "weights": "none", "image_size": model.preprocessing.input_size},
            "data_fingerprint": None,
        },
    }
    torch.save(ckpt, out / BEST_CHECKPOINT)
    return out


#: The operating point :func:`random_bundle` writes by default (a plausible one: T > 1, a low threshold).
DEMO_OPERATING_POINT: dict[str, Any] = {
    "temperature": 1.5,
    "threshold": 0.2,
    "target_sensitivity": 0.9,
    "criterion": "point",
    "risk_bands": {"moderate": 0.07, "high": 0.2},
    "selected_on": "val",
    "validation": {},
}


def random_bundle(
    out_dir: str | os.PathLike[str],
    arch: str,
    image_size: int | None = None,
    fmt: str = "onnx",
    precision: str = "fp32",
    heatmap: bool = True,
    operating_point: dict[str, Any] | None = DEMO_OPERATING_POINT,
    parity_runtimes: Sequence[str] | None = None,
    reuse: bool = False,
    seed: int = 0,
    jpeg_draft: bool = True,
) -> Path:
    """A random-weight run exported to a bundle: ``out_dir/run`` and ``out_dir/bundle``.

    For timing (``benchmarks/``) and tests: the same export path as a trained run, parity checked on a few
    synthetic images.

    Args:
        out_dir: folder for the run and the bundle.
        arch: registry architecture.
        image_size: input side (default: the architecture's).
        fmt: ``onnx`` or ``torchscript``.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (calibrated on 16 other synthetic images).
        heatmap: export the heat-map output.
        operating_point: written as the run's ``operating_point.json`` (``None``: an uncalibrated run).
        parity_runtimes: runtimes checked at export (``None``: all present).
        reuse: return the bundle already in ``out_dir`` instead of exporting again.
        seed: weight seed.
        jpeg_draft: ``False``: the model decodes JPEGs at full scale (see :func:`random_run`).

    Returns:
        The bundle folder.
    """
    from dermascan.export import export_bundle

    out = Path(out_dir)
    bundle = out / "bundle"
    if reuse and (bundle / "manifest.json").is_file():
        return bundle
    run = random_run(out / "run", arch, image_size, seed, jpeg_draft)
    if operating_point is not None:
        (run / OPERATING_POINT_FILE).write_text(json.dumps(operating_point))
    images = [synthetic_jpeg(96 + 24 * i, 72 + 8 * i, seed=i) for i in range(4)]
    calibration = [synthetic_jpeg(300 + 8 * i, 240, seed=100 + i) for i in range(16)] if precision == "int8" else None
    return export_bundle(
        run,
        bundle,
        fmt=fmt,
        precision=precision,
        parity_images=images,
        heatmap=heatmap,
        calibration_images=calibration,
        parity_runtimes=list(parity_runtimes) if parity_runtimes is not None else None,
        overwrite=True,
    )


def monitored_bundle(out_dir: str | os.PathLike[str], images: int = 800, epochs: int = 2) -> Path:
    """A trained bundle with its monitoring reference, for the monitor's tests and benchmarks: ``images``
    melanoma-enriched synthetic 32 px images (:data:`MONITOR_PRIORS`), ``epochs`` of ``cpu-demo`` training, the
    threshold locked at 97% validation sensitivity, exported to ``out_dir/bundle``.

    97%: on 20-40 validation melanomas a 90% point would sit at the 0.88 alert line, so steady traffic would
    raise sensitivity alerts; at 97% only a degraded model's sensitivity falls below it.
    """
    from dermascan.data.synthetic import SynthConfig, generate_dataset
    from dermascan.evaluation.evaluate import evaluate
    from dermascan.export import export_bundle
    from dermascan.training.config import resolve_config
    from dermascan.training.train import train

    root = Path(out_dir)
    synth = SynthConfig(n=images, size=32, seed=5, class_priors=MONITOR_PRIORS, workers=1)
    generate_dataset(root / "data", synth, False)
    run = root / "run"
    cfg = resolve_config(
        "cpu-demo",
        data=str(root / "data"),
        out=str(run),
        epochs=epochs,
        image_size=32,
        batch_size=32,
        precision="32-true",
        val_fraction=0.25,
        test_fraction=0.2,  # the reference's held-out predictions come from the test split (or val + test)
        seed=0,
    )
    train(cfg, progress=False)
    evaluate(run, run / "eval", split="val", target_sensitivity=0.97, require_lower_ci=False, n_boot=20, progress=False)
    return export_bundle(run, root / "bundle", parity_runtimes=["onnxruntime"])
