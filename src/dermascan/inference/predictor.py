"""The Predictor: the one inference path of DermaScan (CLI, HTTP service, export parity, benchmarks).

image (path, bytes, PIL or array) -> decode (:func:`dermascan.data.io.load_image`: EXIF rotation, mode
conversions, size limits) -> the model's own preprocessing (:mod:`dermascan.inference.preprocess`, numpy)
-> runtime (:mod:`dermascan.inference.runtimes`) -> temperature-scaled probabilities -> DermaScan's decision
rule at the locked melanoma threshold (:func:`dermascan.evaluation.operating_point.decide`) -> risk band ->
optional heat map from the same forward pass (:mod:`dermascan.explain.render`).

Uncalibrated models (a run without ``operating_point.json``): temperature 1, the plain argmax decides, the
melanoma flag means "the argmax is melanoma", ``risk_band`` is ``None``, and an ``UncalibratedWarning`` is
issued when the model is loaded.

Nothing here imports torch: with an ONNX bundle on ONNX Runtime or OpenVINO the process never loads it.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from dermascan.config import Preprocessing
from dermascan.data.io import MAX_PIXELS, MIN_SIDE, ImageError, is_image_file, load_image, to_rgb
from dermascan.evaluation.calibration import apply_temperature
from dermascan.evaluation.operating_point import decide, risk_band
from dermascan.inference.bundle import Bundle, ModelCard, is_bundle, load_bundle, load_run
from dermascan.inference.preprocess import preprocess
from dermascan.inference.runtimes import Backend, backend_for_bundle, backend_for_model
from dermascan.taxonomy import API_NAMES, MELANOMA_INDEX

log = logging.getLogger(__name__)

#: What :meth:`Predictor.predict` accepts per image.
ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias)


@dataclass
class Prediction:
    """The result for one image.

    Attributes:
        image: the image's name (its path, or the name given).
        probabilities: calibrated class probabilities by class code, in the ISIC 2018 order.
        primary: code of the diagnosis by DermaScan's decision rule (melanoma exactly when flagged).
        confidence: probability of ``primary``.
        melanoma_risk: calibrated ``p(melanoma)``.
        melanoma_flag: ``melanoma_risk >= threshold`` (uncalibrated model: the argmax is melanoma).
        risk_band: ``low`` / ``moderate`` / ``high``, or ``None`` for an uncalibrated model.
        threshold: the melanoma operating threshold used (``None``: uncalibrated).
        model_version: version of the model that answered.
        heatmap: (H, W) float32 in [0, 1] over the decoded (upright) image, for the ``primary`` class;
            zero outside the centre crop the model saw. ``None`` unless asked for.
        heatmap_box: (left, top, right, bottom) of that crop in the image.
        heatmap_path: where ``predict_paths(heatmap_dir=...)`` wrote the overlay PNG.
        timings_ms: decode, preprocess, inference (the batch's time divided by its size), heatmap, total.
    """

    image: str
    probabilities: dict[str, float]
    primary: str
    confidence: float
    melanoma_risk: float
    melanoma_flag: bool
    risk_band: str | None
    threshold: float | None
    model_version: str
    heatmap: np.ndarray | None = field(default=None, repr=False)
    heatmap_box: tuple[int, int, int, int] | None = None
    heatmap_path: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    _rgb: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def primary_name(self) -> str:
        """API name of the primary diagnosis (``melanocytic_nevus``)."""
        return API_NAMES[self.primary]

    def overlay(self, alpha: float = 0.45) -> Image.Image:
        """The heat map blended over the image (only inside the crop the model saw)."""
        from dermascan.explain.render import overlay

        if self.heatmap is None or self._rgb is None:
            raise ValueError(f"{self.image}: no heat map; predict with heatmap=True")
        return overlay(self._rgb, self.heatmap, alpha=alpha, box=self.heatmap_box)

    def to_dict(self, heatmap_png: bool = False) -> dict[str, Any]:
        """JSON-ready dict (one line of ``dermascan predict``).

        Args:
            heatmap_png: add ``heatmap_png``, the overlay as base64 PNG (the API's ``attention_map``).
        """
        out: dict[str, Any] = {
            "image": self.image,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "primary": self.primary,
            "primary_name": self.primary_name,
            "confidence": round(self.confidence, 6),
            "melanoma_risk": round(self.melanoma_risk, 6),
            "melanoma_flag": self.melanoma_flag,
            "risk_band": self.risk_band,
            "threshold": self.threshold,
            "model_version": self.model_version,
        }
        if self.heatmap_path is not None:
            out["heatmap"] = self.heatmap_path
        if heatmap_png:
            from dermascan.explain.render import to_png_base64

            out["heatmap_png"] = to_png_base64(self.overlay())
        return out


@dataclass
class PredictionError:
    """An image that could not be analysed, and why (the message names the file and the fix)."""

    image: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "error": self.error}


Result = Prediction | PredictionError


@dataclass
class _Prepared:
    """An image after decoding and preprocessing (or the error it raised)."""

    name: str
    rgb: Image.Image | None = None
    x: np.ndarray | None = None  # (3, S, S)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Predictor:
    """A model ready to analyse images, on one runtime.

    Build it with :meth:`from_path` (a bundle, a run folder or a checkpoint). ``predict`` and
    ``predict_paths`` may be called from several threads; inference itself runs one batch at a time.

    Args:
        backend: the loaded model on its runtime.
        card: name, version, preprocessing and decision policy.
        heatmap_kind: ``cam`` / ``attention`` when the backend returns maps, else ``None``.
        workers: threads that decode and preprocess images in parallel (PIL releases the GIL).
        batch_size: largest batch sent to the runtime at once.
    """

    def __init__(self, backend: Backend, card: ModelCard, heatmap_kind: str | None = None, workers: int = 2,
                 batch_size: int = 16) -> None:
        if workers < 1 or batch_size < 1:
            raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}")
        self.backend = backend
        self.card = card
        self.heatmap_kind = heatmap_kind
        self.workers = workers
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # decoding threads, created on first use

    def _decoder_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dermascan-decode")
            return self._pool

    def close(self) -> None:
        """Stop the decoding threads and free the runtime (the Predictor cannot be used afterwards)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- construction

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        runtime: str = "auto",
        precision: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        workers: int = 2,
        batch_size: int = 16,
        digest: str | None = None,
    ) -> Predictor:
        """Load a bundle (checksums verified), a run folder or a checkpoint.

        Args:
            path: bundle folder (``manifest.json``), run folder (``best.ckpt``) or ``.ckpt`` file.
            runtime: ``auto`` (the fastest present, see :func:`~dermascan.inference.runtimes.choose_runtime`)
                or one of ``onnxruntime``, ``openvino``, ``torch``, ``torch-compile``, ``torchscript``.
            precision: ``fp32`` / ``bf16`` / ``fp16``; ``None`` runs a bundle at its exported precision and a
                checkpoint in fp32.
            device: ``cpu`` / ``cuda`` (torch, onnxruntime) or an OpenVINO device; ``None`` picks.
            threads: intra-op threads of the runtime (``None``: its default).
            workers: decoding threads.
            batch_size: largest runtime batch.
            digest: expected sha256 of the bundle's ``manifest.json`` (from a registry), which pins the bundle.

        Raises:
            BundleError: a tampered, incomplete or malformed bundle.
            RuntimeUnavailableError: the runtime cannot run this model here.
            FileNotFoundError: nothing at ``path``.
        """
        path = Path(path)
        if is_bundle(path):
            bundle: Bundle = load_bundle(path, digest=digest)
            backend = backend_for_bundle(bundle, runtime, precision, device, threads)
            return cls(backend, bundle.card, bundle.heatmap, workers, batch_size)
        if digest is not None:
            raise ValueError(f"digest pins a bundle, but {path} is a run folder or checkpoint")
        loaded, card, _ = load_run(path)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        backend, kind = backend_for_model(loaded.model, runtime, precision or "fp32", device, family=card.family)
        return cls(backend, card, kind, workers, batch_size)

    # ---------------------------------------------------------------------------------------- properties

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    @property
    def model_version(self) -> str:
        return self.card.version

    def describe(self) -> dict[str, Any]:
        """Model and runtime, JSON-ready (for logs, ``/health`` and benchmark reports)."""
        return {
            "name": self.card.name,
            "version": self.card.version,
            "architecture": self.card.arch,
            "calibrated": self.card.policy.calibrated,
            "heatmap": self.heatmap_kind,
            **self.backend.describe(),
        }

    # ------------------------------------------------------------------------------------------- stages

    def prepare(self, item: ImageInput, name: str | None = None) -> _Prepared:
        """Decode and preprocess one image; errors are caught and returned, never raised."""
        return prepare_image(item, self.card.preprocessing, name)

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw runtime outputs for a preprocessed batch, in chunks of ``batch_size``.

        Args:
            x: float32 (B, 3, S, S).

        Returns:
            logits (B, K) and maps (B, M, h, w) or ``None``.
        """
        logits, maps = [], []
        for i in range(0, len(x), self.batch_size):
            with self._lock:
                lo, mp = self.backend.run(x[i : i + self.batch_size])
            logits.append(lo)
            if mp is not None:
                maps.append(mp)
        return np.concatenate(logits), (np.concatenate(maps) if maps else None)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / T)``, float64 (B, K)."""
        return apply_temperature(logits, self.card.policy.temperature)

    def decide(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(primary class index (B,), melanoma flag (B,)) by DermaScan's rule at the locked threshold."""
        threshold = self.card.policy.threshold
        primary = decide(probs, threshold)  # (B,)
        if threshold is None:
            return primary, primary == MELANOMA_INDEX
        return primary, probs[:, MELANOMA_INDEX] >= threshold

    # ------------------------------------------------------------------------------------------- predict

    def predict(self, images: Sequence[ImageInput], heatmap: bool = False,
                names: Sequence[str] | None = None) -> list[Result]:
        """Analyse images; a bad image gives a :class:`PredictionError` in its place, never an exception.

        Args:
            images: paths, encoded bytes (JPEG/PNG/...), PIL images or uint8 arrays (H, W[, 3|4]).
            heatmap: also return the heat map of the primary class (from the same forward pass).
            names: a name per image for the results (default: the path, or ``image-<i>``).

        Returns:
            One result per image, in input order.

        Raises:
            ValueError: ``heatmap=True`` but the model was exported without a heat-map output.
        """
        if names is not None and len(names) != len(images):
            raise ValueError(f"got {len(names)} names for {len(images)} images")
        self._check_heatmap(heatmap)
        labels = [names[i] if names is not None else _name_of(img, i) for i, img in enumerate(images)]
        if len(images) > 1 and self.workers > 1:
            prepared = list(self._decoder_pool().map(self.prepare, images, labels))
        else:
            prepared = [self.prepare(img, lab) for img, lab in zip(images, labels, strict=True)]
        return self._finish(prepared, heatmap)

    def predict_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        batch_size: int = 16,
        workers: int | None = None,
        heatmap_dir: str | os.PathLike[str] | None = None,
    ) -> Iterator[Result]:
        """Analyse files and folders, yielding results in input order as batches finish.

        Folders are expanded to their image files (recursively, sorted; other files are skipped). Decoding
        runs ``workers`` files ahead in threads while the runtime works on the previous batch.

        Args:
            paths: image files and/or folders.
            batch_size: images per runtime batch.
            workers: decoding threads (default: the Predictor's).
            heatmap_dir: write ``<name>_heatmap.png`` overlays there (and put the path in each result).

        Yields:
            A :class:`Prediction` or :class:`PredictionError` per image file.
        """
        self._check_heatmap(heatmap_dir is not None)
        files = list(expand_paths(paths))
        out_dir = Path(heatmap_dir) if heatmap_dir is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        with ThreadPoolExecutor(workers or self.workers) as pool:
            pending: deque[Future[_Prepared]] = deque()
            it = iter(files)
            for f in it:  # keep two batches in flight: one decoding, one being inferred
                pending.append(pool.submit(self.prepare, f, str(f)))
                if len(pending) >= 2 * batch_size:
                    break
            while pending:
                batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
                for f in it:
                    pending.append(pool.submit(self.prepare, f, str(f)))
                    if len(pending) >= 2 * batch_size:
                        break
                for result in self._finish(batch, heatmap=out_dir is not None):
                    if out_dir is not None and isinstance(result, Prediction):
                        result.heatmap_path = str(_write_overlay(result, out_dir, used))
                        result.heatmap, result._rgb = None, None  # a folder run must not hold every image
                    yield result

    # ---------------------------------------------------------------------------------------- internals

    def _check_heatmap(self, heatmap: bool) -> None:
        if heatmap and self.heatmap_kind is None:
            raise ValueError(
                f"model {self.card.name} {self.card.version} on {self.runtime} has no heat-map output: export "
                "the bundle with heat maps (the default) or predict with heatmap=False"
            )

    def _finish(self, prepared: list[_Prepared], heatmap: bool) -> list[Result]:
        good = [p for p in prepared if p.error is None]
        results: dict[int, Result] = {}
        if good:
            t0 = time.perf_counter()
            logits, maps = self.infer(np.stack([p.x for p in good]))  # (B, K), (B, M, h, w)
            probs = self.probabilities(logits)  # (B, K)
            primary, flags = self.decide(probs)
            infer_ms = (time.perf_counter() - t0) * 1e3 / len(good)
            bands = self.card.policy.risk_bands
            for j, p in enumerate(good):
                k = int(primary[j])
                p_mel = float(probs[j, MELANOMA_INDEX])
                pred = Prediction(
                    image=p.name,
                    probabilities={c: float(v) for c, v in zip(self.card.classes, probs[j], strict=True)},
                    primary=self.card.classes[k],
                    confidence=float(probs[j, k]),
                    melanoma_risk=p_mel,
                    melanoma_flag=bool(flags[j]),
                    risk_band=None if bands is None else str(risk_band(min(max(p_mel, 0.0), 1.0), bands)),
                    threshold=self.card.policy.threshold,
                    model_version=self.card.version,
                    timings_ms={**p.timings, "inference": infer_ms},
                )
                if heatmap:
                    t1 = time.perf_counter()
                    self._attach_heatmap(pred, maps[j], k, p.rgb)
                    pred.timings_ms["heatmap"] = (time.perf_counter() - t1) * 1e3
                pred.timings_ms["total"] = sum(pred.timings_ms.values())
                results[id(p)] = pred
        return [results[id(p)] if p.error is None else PredictionError(p.name, p.error) for p in prepared]

    def _attach_heatmap(self, pred: Prediction, maps: np.ndarray, class_index: int, rgb: Image.Image) -> None:
        from dermascan.explain.render import heatmap_on_image

        heat, box = heatmap_on_image(maps, class_index, rgb.size, self.card.preprocessing)  # (H, W)
        pred.heatmap, pred.heatmap_box, pred._rgb = heat, tuple(box), rgb


# ----------------------------------------------------------------------------------------------- helpers


def prepare_image(item: ImageInput, pre: Preprocessing, name: str | None = None) -> _Prepared:
    """Decode and preprocess one image as every Predictor does; errors are caught and returned, never raised.

    A function of its own so that decoding can run where no model is loaded (the decode tasks of
    :mod:`dermascan.scoring`, ahead of the actors that hold the model).

    Returns:
        The decoded image, its network input ``x`` (3, S, S) and stage timings, or ``error`` (a message that
        names the image and what is wrong).
    """
    label = name or _name_of(item)
    p = _Prepared(label)
    t0 = time.perf_counter()
    try:
        p.rgb = _decode(item, label)
        t1 = time.perf_counter()
        p.x = preprocess(p.rgb, pre)
        t2 = time.perf_counter()
        p.timings = {"decode": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3}
    except ImageError as e:
        p.error = str(e)
    except Exception as e:  # an unexpected decoder failure must not stop a folder run
        p.error = f"{label}: could not be decoded ({type(e).__name__}: {e})"
    return p


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files as given (even without an image suffix, so a bad one gets its error) and the image files of
    folders, recursively and sorted."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
        else:
            yield p


def _name_of(item: Any, index: int | None = None) -> str:
    if isinstance(item, str | os.PathLike):
        return str(item)
    filename = getattr(item, "filename", None)  # a PIL image opened from a file
    if isinstance(filename, str) and filename:
        return filename
    return f"image-{index}" if index is not None else "image"


def _decode(item: ImageInput, label: str) -> Image.Image:
    """Any accepted input -> upright RGB PIL image, with the size limits of :func:`load_image`."""
    if isinstance(item, str | os.PathLike | bytes | bytearray | memoryview):
        data = bytes(item) if isinstance(item, bytearray | memoryview) else item
        return load_image(data, name=label)
    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)):
            raise ImageError(
                f"{label}: an image array must be uint8 (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, got "
                f"{item.dtype} {item.shape}; convert floats with (x * 255).round().astype(np.uint8)"
            )
        img = Image.fromarray(item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item)
    else:
        raise ImageError(f"{label}: unsupported input type {type(item).__name__} (path, bytes, PIL image or array)")
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{label}: {w}x{h} is larger than the {MAX_PIXELS:,} pixel limit; downscale it")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{label}: {w}x{h} is too small (need at least {MIN_SIDE} px per side)")
    return to_rgb(img)


def _write_overlay(pred: Prediction, out_dir: Path, used: set[str]) -> Path:
    stem = Path(pred.image).stem or "image"
    name, n = f"{stem}_heatmap.png", 1
    while name in used:  # two files with one name in different folders
        n += 1
        name = f"{stem}_{n}_heatmap.png"
    used.add(name)
    from dermascan import _io

    buf = io.BytesIO()
    pred.overlay().save(buf, format="PNG")
    return _io.write_bytes(out_dir / name, buf.getvalue())


__all__ = ["ImageInput", "Prediction", "PredictionError", "Predictor", "Result", "expand_paths", "prepare_image"]
