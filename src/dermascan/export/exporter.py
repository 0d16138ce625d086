"""``export_bundle``: a run (or checkpoint) to a verified, checksummed bundle (see :mod:`dermascan.export`)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermascan.export.check import check_bundle_parity, reference_predictor, split_images
from dermascan.export.manifest import bundle_manifest
from dermascan.export.parity import ExportParityError
from dermascan.export.quantize import DEFAULT_CALIBRATION_IMAGES, DEFAULT_SENSITIVITY_IMAGES
from dermascan.inference.bundle import (
    MODEL_FILES,
    MODEL_FORMATS,
    PRECISIONS,
    WEIGHTS_FILE,
    ModelCard,
    is_bundle,
    run_card,
    write_manifest,
)
from dermascan.inference.embedding import EMBEDDING_FILE, write_projection
from dermascan.monitoring.reference import REFERENCE_FILE
from dermascan.runs import load_run

if TYPE_CHECKING:
    from torch import nn

    from dermascan.export.parity import ParityReport
    from dermascan.export.quantize import Int8Graph
    from dermascan.inference.predictor import ImageInput

log = logging.getLogger(__name__)
#: Test images needed before the monitoring reference's predictions come from the test split alone.
MIN_HELD_OUT = 300


def export_bundle(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    fmt: str = "onnx",
    precision: str = "fp32",
    parity_images: Sequence[ImageInput] | None = None,
    name: str | None = None,
    version: str | None = None,
    *,
    heatmap: bool = True,
    include_weights: bool = True,
    parity_runtimes: Sequence[str] | None = None,
    max_parity_images: int | None = None,
    calibration_images: Sequence[ImageInput] | None = None,
    max_calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    int8_float_layers: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    reference: bool = True,
) -> Path:
    """Export a run (or a checkpoint) to a verified bundle at ``out_dir``.

    Args:
        run_dir: run folder (``best.ckpt``, else ``last.ckpt``; ``operating_point.json`` when evaluated) or a
            ``.ckpt`` file.
        out_dir: bundle folder to create (must not exist, or be empty, unless ``overwrite``).
        fmt: ``onnx`` (the main artifact) or ``torchscript``.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (see the module docstring for what each means).
        parity_images: images for the parity check (paths, folders of images, bytes, PIL, arrays). Default: the
            run's validation split (``splits.csv`` + the dataset named by ``config.yaml``).
        name: model name (default ``dermascan-<arch>``).
        version: model version, e.g. ``2.4.1`` (default ``<run name>-<checkpoint date>``).
        heatmap: give the graph the heat-map output (``maps``) besides ``logits``.
        include_weights: also store the state dict, so the bundle runs on eager PyTorch / torch.compile.
        parity_runtimes: runtimes to check (default: every one present that serves this format and precision).
        max_parity_images: use at most this many parity images (the first ones, in split order).
        calibration_images: ``int8`` only: images that fit the activation ranges (same kinds as
            ``parity_images``). Default: the run's training split; never the parity images.
        max_calibration_images: ``int8`` only: use at most this many calibration images (spread evenly); the
            layers' sensitivity is measured on up to :data:`~dermascan.export.quantize.DEFAULT_SENSITIVITY_IMAGES`
            of the others.
        int8_float_layers: ``int8`` only: ``None`` tries all-int8 and, when it fails parity, keeps the 1, 2, 4,
            ... layers most sensitive to int8 in float, up to a quarter of them (:mod:`dermascan.export.quantize`);
            a list writes exactly that graph: these weighted nodes in float (names as a manifest's
            ``quantization.float_layers``; ``[]``: all-int8).
        overwrite: replace an existing bundle at ``out_dir``.
        progress: progress bars (stderr) for the calibration and parity passes.
        reference: write the training reference drift detection reads (``reference.json``: feature quantiles of
            the training split, flag rate, class mix and an embedding sample on the validation split; see
            :mod:`dermascan.monitoring.reference`). Skipped, with a warning, when the run's data set is not here.

    Returns:
        ``out_dir``.

    Raises:
        ExportParityError: the exported model disagrees with the eager model (figures in the message and in
            ``.reports``; for int8, of every graph tried); nothing is written at ``out_dir``.
        ValueError: bad ``fmt``/``precision``, no parity (or, for int8, calibration) images, or ``out_dir``
            is in the way.
        QuantizationError: ``int8`` and the quantizer failed.
    """
    if fmt not in MODEL_FORMATS:
        raise ValueError(f"format must be one of {', '.join(MODEL_FORMATS)}, got {fmt!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and fmt != "onnx":
        raise ValueError("int8 is an ONNX precision (a quantized QDQ graph); export --format onnx --precision int8")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (overwrite and is_bundle(out)):
        raise ValueError(
            f"{out} exists and is not empty; choose a new folder"
            + (" or pass overwrite=True (--overwrite) to replace the bundle there" if is_bundle(out) else "")
        )
    run_path = Path(run_dir)
    run = load_run(run_path)
    loaded, card, op_raw = run.loaded, run_card(run, name, version), run.operating_point()
    # The bundle's Predictor predicts single-view: a threshold locked on TTA logits would not hold there.
    card.policy.check_views(False, "an exported bundle")
    if precision == "int8" and card.family != "cnn":
        # Measured: a vit_tiny's last-block attention map on OpenVINO int8 differed from the eager one by 1.0
        # (normalised, the whole range) while its decisions agreed; a wrong heat map is worse than none.
        raise ValueError(
            f"int8 export is for CNNs; {card.arch} is a {card.family} whose attention map does not "
            "survive int8 on OpenVINO: use --precision bf16"
        )
    images = _expand(parity_images) if parity_images is not None else split_images(run_path, "val")
    if max_parity_images is not None:
        images = images[:max_parity_images]
    if not images:
        raise ValueError("no parity images: pass parity_images (e.g. a few validation photos)")

    from dermascan.inference.runtimes import with_heatmap_head

    model = loaded.model.eval()
    graph, kind = with_heatmap_head(model) if heatmap else (model, None)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    failures: list[tuple[list[str], ExportParityError]] = []
    parity_cache: dict[str, Any] = {}  # the images and the eager outputs, read and run once for every graph tried
    try:
        # int8's working files (the fp32 graph, the calibration cache, the graphs tried) stay out of the bundle
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.int8-") as work:
            ladder = None
            if precision == "int8":
                pool = _expand(calibration_images) if calibration_images is not None else None
                ladder = _int8_ladder(
                    graph, model, card, run_path, Path(work), pool, max_calibration_images, int8_float_layers, progress
                )
            if include_weights:
                _write_weights(model, tmp / WEIGHTS_FILE)
            has_reference, has_projection = (
                _write_reference(model, card, run_path, tmp, kind) if reference else (False, False)
            )
            # One graph, except at int8: all-int8 first, then more of the most sensitive layers in float.
            for float_nodes in ladder if ladder is not None else [[]]:
                if ladder is None:
                    outputs = _write_model(graph, tmp, fmt, precision, card.preprocessing.input_size)
                else:
                    outputs = ladder.write(tmp / MODEL_FILES["onnx"], float_nodes)
                manifest = bundle_manifest(
                    card, run_path, loaded.hparams, op_raw, fmt, precision, outputs, kind, include_weights
                )
                manifest["reference"] = {"file": REFERENCE_FILE} if has_reference else None
                manifest["embedding"] = {"file": EMBEDDING_FILE} if has_projection else None
                if ladder is not None:
                    manifest["model"]["quantization"] = ladder.describe(float_nodes)
                write_manifest(tmp, manifest)
                try:
                    reports = check_bundle_parity(
                        tmp, model, card, kind, images, precision, parity_runtimes, progress, parity_cache
                    )
                    break
                except ExportParityError as e:
                    failures.append((float_nodes, e))
                    if ladder is not None:
                        log.warning("int8 with %s failed parity: %s", _float_phrase(float_nodes), e)
            else:
                if ladder is None:
                    raise failures[-1][1]
                raise ExportParityError(ladder.refusal(failures), [r for _, e in failures for r in e.reports])
        if ladder is not None:
            manifest["model"]["quantization"]["ladder"] = [_rung(nodes, e.reports, False) for nodes, e in failures] + [
                _rung(float_nodes, reports, True)
            ]
        manifest["parity"] = [r.to_dict() for r in reports]
        write_manifest(tmp, manifest)  # the manifest is not in its own checksum table: rewriting it is safe
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in reports:
        log.info("parity %s", r.summary())
    return out


def _write_reference(
    model: nn.Module, card: ModelCard, run_dir: Path, folder: Path, kind: str | None
) -> tuple[bool, bool]:
    """Write the monitoring reference into the bundle folder, and the embedding projection beside it when the graph
    returns the penultimate features (a heat-map head, ``kind``). ``(reference written, projection written)``;
    no reference (warned) when the run's splits or data set are not here, since a bundle without one still
    serves (the monitor then says how to get one)."""
    from dermascan.monitoring.reference import ReferenceError, reference_from_images, write_reference

    try:
        train = split_images(run_dir, "train")
        # one image per lesion: a lesion photographed 3 times is one case, and a clustered sample's flag rate and
        # embeddings vary more than their count says (false drift alarms on steady traffic)
        val, test = (split_images(run_dir, s, one_per_lesion=True) for s in ("val", "test"))
    except ValueError as e:
        log.warning("no monitoring reference in the bundle: %s", e)
        return False, False
    # The predictions' reference comes from images the model never fitted. The validation split chose the
    # checkpoint and its melanomas the threshold, so it flags more than new traffic will (measured on a small run:
    # 0.40 on validation + test against 0.33 on 9,000 new images): the test split alone when it is large enough,
    # else validation and test together (a test split of a hundred clustered lesions is off by as much).
    held_out = test if len(test) >= MIN_HELD_OUT else val + test
    if not train or not held_out:
        log.warning("no monitoring reference in the bundle: the run's train or held-out splits are empty")
        return False, False
    try:
        ref, projection = reference_from_images(reference_predictor(model, card, kind), train, held_out)
    except ReferenceError as e:
        log.warning("no monitoring reference in the bundle: %s", e)
        return False, False
    write_reference(folder, ref)
    if projection is not None:
        write_projection(folder, projection)
    return True, projection is not None


def _expand(images: Sequence[ImageInput]) -> list[ImageInput]:
    """Folders become their image files; everything else is kept as given."""
    from dermascan.inference.predictor import expand_paths

    out: list[ImageInput] = []
    for item in images:
        if isinstance(item, str | os.PathLike) and Path(item).is_dir():
            out.extend(expand_paths([item]))
        else:
            out.append(item)
    return out


class _Int8Ladder:
    """The int8 graphs an export tries in turn, and what its manifest says about the one it keeps.

    Iterating yields float-node lists, each after the one before failed parity: ``fixed`` alone when given,
    else ``[]`` (all-int8) and then the rungs of :func:`~dermascan.export.quantize.float_ladder`, whose
    sensitivity is measured (on ``held_out()``, training images) only once all-int8 has failed.
    """

    def __init__(
        self,
        int8: Int8Graph,
        outputs: list[str],
        fixed: Sequence[str] | None,
        held_out: Callable[[], list[np.ndarray]],
    ) -> None:
        self.int8, self.outputs, self.fixed, self._held_out = int8, outputs, fixed, held_out
        self.sensitivity: dict[str, float] | None = None
        self.n_sensitivity = 0

    def __iter__(self) -> Iterator[list[str]]:
        from dermascan.export.quantize import float_ladder, layer_sensitivity, max_float_nodes

        if self.fixed is not None:
            yield list(self.fixed)
            return
        yield []
        images = self._held_out()
        self.n_sensitivity = sum(len(b) for b in images)
        self.sensitivity = layer_sensitivity(self.int8, images)
        yield from float_ladder(list(self.sensitivity), max_float_nodes(len(self.int8.nodes)))

    def write(self, path: Path, float_nodes: Sequence[str]) -> list[str]:
        self.int8.write(path, float_nodes)
        return self.outputs

    def describe(self, float_nodes: Sequence[str]) -> dict[str, Any]:
        """The manifest's ``model.quantization`` for the graph with ``float_nodes`` in float."""
        if self.fixed is not None:
            choice = "given (int8_float_layers)"
        elif not float_nodes:
            choice = "all-int8"
        else:
            choice = (
                f"the {len(float_nodes)} of {len(self.int8.nodes)} weighted layers most sensitive to int8 "
                f"(output KL divergence removed by each alone in float, on {self.n_sensitivity} held-out training "
                "images; dermascan.export.quantize.layer_sensitivity)"
            )
        return {
            "method": "post-training static, QDQ (onnxruntime.quantization)",
            "weights": "int8 per channel",
            "activations": "uint8 per tensor, MinMax",
            "calibration_images": self.int8.n_calibration,
            "float_layers": list(float_nodes),
            "float_layer_weights": [self.int8.weights[n] for n in float_nodes],
            "float_layer_choice": choice,
            "sensitivity": None if self.sensitivity is None else {k: round(v, 6) for k, v in self.sensitivity.items()},
            "sensitivity_images": self.n_sensitivity or None,
        }

    def refusal(self, failures: Sequence[tuple[list[str], ExportParityError]]) -> str:
        """The message of an int8 export no rung got through parity: how far each rung got."""
        tried = "; ".join(f"{_float_phrase(nodes)}: {_agreement(e)}" for nodes, e in failures)
        most = len(failures[-1][0])
        limit = (
            "the graph asked for"
            if self.fixed is not None
            else f"{most} of {len(self.int8.nodes)} weighted layers in float (the limit, a quarter)"
        )
        return (
            f"int8 export refused: no graph up to {limit} passed parity ({tried}). The bundle was not written; "
            "export --precision bf16, which keeps the decisions, or calibrate on more images"
        )


def _float_phrase(nodes: Sequence[str]) -> str:
    return "all-int8" if not nodes else f"{len(nodes)} layer(s) in float ({', '.join(nodes)})"


def _agreement(error: ExportParityError) -> str:
    """Primary / flag agreement per runtime, or the error itself when it has no figures."""
    if not error.reports:
        return str(error)
    return ", ".join(
        f"{r.runtime} {r.primary_agreement:.2%} / {r.flag_agreement:.2%}{'' if r.passed else ' FAIL'}"
        for r in error.reports
    )


def _rung(float_nodes: Sequence[str], reports: Sequence[ParityReport], passed: bool) -> dict[str, Any]:
    """One line of the manifest's ``quantization.ladder``: a graph tried and how it fared on each runtime."""
    return {
        "float_layers": len(float_nodes),
        "passed": passed,
        "agreement": {
            r.runtime: {"primary": r.primary_agreement, "flag": r.flag_agreement, "p95_map": r.p95_abs_map_diff}
            for r in reports
        },
    }


def _int8_ladder(
    graph: nn.Module,
    model: nn.Module,
    card: ModelCard,
    run_dir: Path,
    work: Path,
    images: Sequence[ImageInput] | None,
    limit: int,
    fixed: Sequence[str] | None,
    progress: bool,
) -> _Int8Ladder:
    """Export the fp32 graph into ``work``, calibrate it, and set up the int8 graphs to try.

    Calibration takes ``limit`` training images spread evenly over the pool (default: the run's training
    split); the layers' sensitivity, when needed, up to :data:`DEFAULT_SENSITIVITY_IMAGES` of the rest,
    spread the same way, or the calibration images themselves when the pool has no others. Never the
    parity images: the gate would then judge a choice made on its own data.
    """
    from dermascan.export.onnx import export_onnx, output_names
    from dermascan.export.quantize import Int8Graph

    pool = list(images) if images is not None else split_images(run_dir, "train")
    picked = _spread(len(pool), limit)
    calibration = _prepare(model, card, [pool[i] for i in picked], "int8 calibration", progress)
    if not calibration:
        raise ValueError(
            "no calibration images could be read for int8: pass calibration_images "
            "(--calibration-images DIR, a few hundred training photos)"
        )
    size = card.preprocessing.input_size
    export_onnx(graph, work / "model.fp32.onnx", size, "fp32")
    int8 = Int8Graph(work / "model.fp32.onnx", calibration, work)

    def held_out() -> list[np.ndarray]:
        rest = sorted(set(range(len(pool))) - set(picked))
        batches = _prepare(
            model, card, [pool[rest[i]] for i in _spread(len(rest), DEFAULT_SENSITIVITY_IMAGES)], None, progress
        )
        if not batches:
            log.warning("int8: no training images left beside calibration; layer sensitivity measured on those")
        return batches or calibration

    return _Int8Ladder(int8, output_names(graph, size), fixed, held_out)


def _spread(n: int, limit: int) -> list[int]:
    """At most ``limit`` of ``range(n)``, spread evenly (every class region of a split sorted by class)."""
    if limit <= 0 or n <= limit:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def _prepare(
    model: nn.Module, card: ModelCard, images: Sequence[ImageInput], label: str | None, progress: bool
) -> list[np.ndarray]:
    """Preprocessed images in batches of 8, for the quantizer (unreadable ones skipped, with a warning)."""
    from dermascan.export.parity import prepare_batches

    batches, errors = prepare_batches(
        reference_predictor(model, card, None), images, batch_size=8, progress=label if progress else None
    )
    if errors:
        log.warning("int8: %d image(s) skipped: %s", len(errors), "; ".join(errors[:3]))
    return batches


def _write_model(graph: nn.Module, folder: Path, fmt: str, precision: str, input_size: int) -> list[str]:
    """Write the fp32/fp16/bf16 model file; int8 graphs come from :class:`_Int8Ladder`."""
    from dermascan.export.onnx import output_names

    if fmt == "onnx":
        from dermascan.export.onnx import export_onnx

        export_onnx(graph, folder / MODEL_FILES["onnx"], input_size, precision)
    else:
        from dermascan.export.torchscript import export_torchscript

        export_torchscript(graph, folder / MODEL_FILES["torchscript"], input_size, precision)
    return output_names(graph, input_size)


def _write_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"arch": str(getattr(model, "arch", ""))})
