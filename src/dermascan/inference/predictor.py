"""The Predictor: the one inference path of DermaScan (CLI, HTTP service, export parity, benchmarks).

image (path, bytes, PIL or array) -> decode (:func:`dermascan.data.io.load_image`: EXIF rotation, mode
conversions, size limits) -> the model's own preprocessing (:mod:`dermascan.data.preprocess`, numpy)
-> runtime (:mod:`dermascan.inference.runtimes`) -> temperature-scaled probabilities -> DermaScan's decision
rule at the locked melanoma threshold (:func:`dermascan.decision.decide`) -> risk band ->
optional heat map from the same forward pass (:mod:`dermascan.explain.render`), and the embedding drift
monitoring stores (the penultimate features through the bundle's projection, :mod:`dermascan.inference.embedding`).

Uncalibrated models (a run without ``operating_point.json``): temperature 1, the plain argmax decides, the
melanoma flag means "the argmax is melanoma", ``risk_band`` is ``None``, and an ``UncalibratedWarning`` is
issued when the model is loaded.

Nothing here imports torch: with an ONNX bundle on ONNX Runtime or OpenVINO the process never loads it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermascan.data.io import ImageError
from dermascan.decision import DecisionPolicy, apply_temperature, risk_band
from dermascan.inference.backends import Outputs
from dermascan.inference.bundle import Bundle, ModelCard, is_bundle, load_bundle, model_card, run_card
from dermascan.inference.embedding import EmbeddingProjection
from dermascan.inference.inputs import Prepared, expand_paths, name_of, prepare_image
from dermascan.inference.results import ImageInput, Prediction, PredictionError, Result, write_overlay
from dermascan.inference.runtimes import Backend, backend_for_bundle, backend_for_model
from dermascan.taxonomy import MELANOMA_INDEX

log = logging.getLogger(__name__)


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
        projection: projects the graph's penultimate features to each prediction's ``embedding`` (a bundle's
            ``embedding.json``); ``None``: predictions carry no embedding.
    """

    def __init__(
        self,
        backend: Backend,
        card: ModelCard,
        heatmap_kind: str | None = None,
        workers: int = 2,
        batch_size: int = 16,
        projection: EmbeddingProjection | None = None,
    ) -> None:
        if workers < 1 or batch_size < 1:
            raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}")
        self.backend = backend
        self.card = card
        self.heatmap_kind = heatmap_kind
        self.projection = projection
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
            device: ``cpu`` / ``cuda`` (torch, onnxruntime), ``tensorrt`` (onnxruntime's TensorRT provider) or
                an OpenVINO device; ``None`` picks.
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
            return cls(backend, bundle.card, bundle.heatmap, workers, batch_size, bundle.projection)
        if digest is not None:
            raise ValueError(f"digest pins a bundle, but {path} is a run folder or checkpoint")
        from dermascan.runs import load_run

        run = load_run(path)
        card = run_card(run)
        card.policy.check_views(False, "the Predictor")
        return cls._of_model(run.loaded, card, runtime, precision, device, threads, workers, batch_size)

    @classmethod
    def from_model(
        cls,
        loaded: Any,
        policy: DecisionPolicy | None = None,
        runtime: str = "torch",
        device: str | None = None,
        heatmap: bool = False,
        batch_size: int = 16,
    ) -> Predictor:
        """A Predictor around a live model (a :class:`~dermascan.models.LoadedModel`), for evaluation.

        Args:
            loaded: the loaded checkpoint.
            policy: the decision policy to apply (default: uncalibrated, argmax).
            runtime: ``torch`` or ``torch-compile``.
            device: torch device (``None``: where the model is).
            heatmap: give the backend the heat-map head.
            batch_size: largest batch sent to the model at once.
        """
        card = model_card(loaded, policy)
        return cls._of_model(loaded, card, runtime, "fp32", device, None, 2, batch_size, heatmap=heatmap)

    @classmethod
    def _of_model(
        cls,
        loaded: Any,
        card: ModelCard,
        runtime: str,
        precision: str | None,
        device: str | None,
        threads: int | None,
        workers: int,
        batch_size: int,
        heatmap: bool = True,
    ) -> Predictor:
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        backend, kind = backend_for_model(
            loaded.model, runtime, precision or "fp32", device, heatmap=heatmap, family=card.family
        )
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

    def prepare(self, item: ImageInput, name: str | None = None) -> Prepared:
        """Decode and preprocess one image; errors are caught and returned, never raised."""
        return prepare_image(item, self.card.preprocessing, name)

    def infer(self, x: np.ndarray) -> Outputs:
        """Raw runtime outputs for a preprocessed batch, in chunks of ``batch_size``.

        Args:
            x: float32 (B, 3, S, S).

        Returns:
            logits (B, K); maps (B, M, h, w) and features (B, D) or ``None``.
        """
        chunks = []
        for i in range(0, len(x), self.batch_size):
            with self._lock:
                chunks.append(self.backend.run(x[i : i + self.batch_size]))
        if len(chunks) == 1:
            return chunks[0]
        return Outputs(*(None if parts[0] is None else np.concatenate(parts) for parts in zip(*chunks, strict=True)))

    def logits(self, images: Sequence[ImageInput], tta: bool = False, progress: bool = False) -> np.ndarray:
        """Raw logits (N, K) of images, in order, through the same decode and preprocessing as :meth:`predict`.

        What evaluation and calibration read: the decision policy is not applied here.

        Args:
            images: paths or any :data:`ImageInput`.
            tta: average the logits over the image and its horizontal, vertical and double flips (dermoscopy
                has no natural orientation); a threshold fitted on these holds only for these.
            progress: show a progress bar on stderr.

        Raises:
            ImageError: an image cannot be decoded (named in the message).
        """
        out = np.zeros((0, len(self.card.classes)))
        chunks = range(0, len(images), self.batch_size)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="predicting", unit="batch")
        pool = self._decoder_pool()
        parts = []
        for i in chunks:
            prepared = list(pool.map(self.prepare, images[i : i + self.batch_size]))
            bad = next((p for p in prepared if p.error is not None), None)
            if bad is not None:
                raise ImageError(bad.error)
            x = np.stack([p.x for p in prepared])  # (B, 3, S, S)
            views = [x, x[..., ::-1], x[..., ::-1, :], x[..., ::-1, ::-1]] if tta else [x]
            parts.append(np.mean([self.infer(np.ascontiguousarray(v))[0] for v in views], axis=0))  # (B, K)
        return np.concatenate(parts).astype(np.float64) if parts else out

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / T)``, float64 (B, K)."""
        return apply_temperature(logits, self.card.policy.temperature)

    def decide(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(primary class index (B,), melanoma flag (B,)) by DermaScan's rule at the locked threshold."""
        threshold = self.card.policy.threshold
        primary = self.card.policy.decide(probs)  # (B,)
        if threshold is None:
            return primary, primary == MELANOMA_INDEX
        return primary, probs[:, MELANOMA_INDEX] >= threshold

    # ------------------------------------------------------------------------------------------- predict

    def predict(
        self, images: Sequence[ImageInput], heatmap: bool = False, names: Sequence[str] | None = None
    ) -> list[Result]:
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
        labels = [names[i] if names is not None else name_of(img, i) for i, img in enumerate(images)]
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
            pending: deque[Future[Prepared]] = deque()
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
                        result.heatmap_path = str(write_overlay(result, out_dir, used))
                        result.release_images()  # a folder run must not hold every image
                    yield result

    # ---------------------------------------------------------------------------------------- internals

    def _check_heatmap(self, heatmap: bool) -> None:
        if heatmap and self.heatmap_kind is None:
            raise ValueError(
                f"model {self.card.name} {self.card.version} on {self.runtime} has no heat-map output: export "
                "the bundle with heat maps (the default) or predict with heatmap=False"
            )

    def _finish(self, prepared: list[Prepared], heatmap: bool) -> list[Result]:
        good = [p for p in prepared if p.error is None]
        results: dict[int, Result] = {}
        if good:
            t0 = time.perf_counter()
            logits, maps, features = self.infer(np.stack([p.x for p in good]))  # (B, K), (B, M, h, w), (B, D)
            probs = self.probabilities(logits)  # (B, K)
            emb = None if self.projection is None or features is None else self.projection(features)  # (B, k)
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
                    embedding=None if emb is None else emb[j],
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


__all__ = ["ImageInput", "Prediction", "PredictionError", "Predictor", "Result", "expand_paths"]
