"""Where model weights come from: ``"none"``, ``"imagenet"`` (torchvision's hub download) or a local file.

Two rules drive this module:

* Never fall back silently. A model that should start from ImageNet but starts from random weights trains to
  a plausible-looking, much worse result; so a missing download is an error that says exactly which file to
  put where, or how to choose ``--weights PATH`` / ``--weights none`` instead.
* Fail fast offline. Clinics and CI machines often have no internet; the download is attempted only after
  the hub cache was checked and a 5 s connection probe succeeded, so a missing network costs seconds.

Files are read with ``torch.load(weights_only=True)`` (or safetensors): a weights file is data, and
unpickling arbitrary objects from it would run arbitrary code.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from dermascan.errors import DermaScanError

#: The ``weights`` argument of ``create_model``: ``"none"``, ``"imagenet"`` or a path to a local file.
WeightsArg = str | os.PathLike[str] | None

#: Prefixes that wrappers add to parameter names: Lightning (``model.``), DDP (``module.``), torch.compile.
_WRAPPER_PREFIXES = ("model.", "module.", "_orig_mod.")
#: Keys under which checkpoints nest the network's state dict (Lightning, common scripts, torchvision
#: references' ``train.py``).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")

PROBE_TIMEOUT_S = 5.0


class WeightsUnavailableError(DermaScanError, RuntimeError):
    """Pretrained weights are neither cached locally nor downloadable; the message says how to fix it."""


class WeightsFileError(DermaScanError, ValueError):
    """A weights file cannot be read safely, is not a state dict, or does not fit the architecture."""


def resolve_weights(weights: WeightsArg) -> Literal["none", "imagenet"] | Path:
    """Validate the ``weights`` argument at the boundary.

    Args:
        weights: ``"none"`` (or ``None``), ``"imagenet"``, or a path to an existing local file.

    Returns:
        ``"none"``, ``"imagenet"`` or the file's :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: a path that does not exist, with the accepted values.
        TypeError: anything else (e.g. ``True``).
    """
    if weights is None:
        return "none"
    if not isinstance(weights, str | os.PathLike):
        raise TypeError(f"weights must be 'none', 'imagenet' or a file path, got {weights!r}")
    if isinstance(weights, str) and weights.lower() in ("none", "imagenet"):
        return weights.lower()  # type: ignore[return-value]
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} does not exist. Pass weights='none' (random initialisation), "
            "'imagenet' (torchvision's ImageNet weights) or the path of a local .pth/.pt/.ckpt/.safetensors file"
        )
    return path


# ----------------------------------------------------------------------------------------------- ImageNet


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub`` keeps the file of ``url``: ``<torch.hub.get_dir()>/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    A probe first, because on a firewalled network a download can hang for minutes before it fails.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def imagenet_fix_message(arch: str, weights_enum: Any, reason: str) -> str:
    """The how-to-fix text for missing torchvision ImageNet weights (exact URL and cache path)."""
    url = weights_enum.url
    return (
        f"ImageNet weights for {arch} ({weights_enum}) are not in the torch hub cache and cannot be "
        f"downloaded: {reason}.\n"
        "Fix it in one of three ways:\n"
        f"  1. on a machine with internet, download {url}\n"
        f"     and copy the file to {hub_cache_path(url)}\n"
        "     (torch hub cache: ~/.cache/torch/hub/checkpoints/ unless TORCH_HOME is set);\n"
        f"  2. pass --weights PATH (weights=PATH) with that .pth file or any other {arch} state dict;\n"
        "  3. pass --weights none (weights='none') to train from random initialisation."
    )


def fetch_torchvision_weights(weights_enum: Any, arch: str) -> dict[str, Tensor]:
    """Return the state dict of a torchvision ``WeightsEnum`` member through torchvision's own code path.

    The hub cache is used when the file is there; otherwise the download is attempted only if
    ``download.pytorch.org`` answers within :data:`PROBE_TIMEOUT_S` seconds.

    Args:
        weights_enum: e.g. ``ResNet50_Weights.IMAGENET1K_V2``.
        arch: registry name, for messages.

    Raises:
        WeightsUnavailableError: not cached and not downloadable, or the cached file is unreadable; the
            message names the URL, the cache path and the alternatives.
    """
    cached = hub_cache_path(weights_enum.url)
    if cached.is_file():
        try:
            return weights_enum.get_state_dict(progress=False, weights_only=True)
        except Exception as e:  # a truncated or foreign file in the cache
            raise WeightsUnavailableError(
                f"the cached file {cached} cannot be read ({type(e).__name__}: {e}); delete it and retry.\n"
                + imagenet_fix_message(arch, weights_enum, "the cached copy is damaged")
            ) from e
    host = urlparse(weights_enum.url).hostname or ""
    if not host_reachable(host):
        raise WeightsUnavailableError(imagenet_fix_message(arch, weights_enum, f"{host} is unreachable (no internet?)"))
    try:
        # check_hash: torchvision file names carry a sha256 prefix, so a corrupted download is caught here.
        return weights_enum.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (URLError, OSError, RuntimeError) as e:
        raise WeightsUnavailableError(imagenet_fix_message(arch, weights_enum, f"{type(e).__name__}: {e}")) from e


# -------------------------------------------------------------------------------------------- local files


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a local weights file safely and return the network's state dict.

    Accepted contents, detected by their keys:

    * a plain state dict (``torch.save(model.state_dict(), path)``), with any number of output classes;
    * a checkpoint dict nesting it under ``state_dict`` (Lightning), ``model_state_dict`` or ``model``;
      Lightning's ``model.`` prefix, DDP's ``module.`` and torch.compile's ``_orig_mod.`` are stripped;
    * a ``.safetensors`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        WeightsFileError: the file cannot be unpickled with ``weights_only=True`` or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsFileError(
            f"cannot read {path} as a weights file with torch.load(weights_only=True): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
            "DermaScan never unpickles arbitrary objects. Re-save the weights as a plain state dict: "
            "torch.save(model.state_dict(), path)."
        ) from e
    return extract_state_dict(obj, source=str(path))


def _all_tensors(d: Mapping[Any, Any]) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in d.items())


def extract_state_dict(obj: Any, source: str = "<object>") -> dict[str, Tensor]:
    """Unwrap a loaded object into a plain ``{name: tensor}`` state dict (see :func:`read_state_dict`).

    Raises:
        WeightsFileError: ``obj`` is not a mapping of tensors and nests none.
    """
    if not isinstance(obj, Mapping):
        raise WeightsFileError(
            f"{source} holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead"
        )
    nested = False
    for key in _NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _all_tensors(inner):
            obj, nested = inner, True
            break
    state = dict(obj)
    # Lightning modules hold the network as `self.model`; other entries of their state dict (a loss's
    # buffers, metric states) are not part of the network, so only the `model.` entries are kept.
    if nested and any(k.startswith("model.") for k in state if isinstance(k, str)):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    for prefix in _WRAPPER_PREFIXES:
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    if not _all_tensors(state):
        bad = next(((k, v) for k, v in state.items() if not isinstance(v, Tensor)), None)
        detail = f"entry {bad[0]!r} holds a {type(bad[1]).__name__}" if bad else "it is empty"
        raise WeightsFileError(
            f"{source} is not a state dict ({detail}) and nests none under {', '.join(_NESTED_KEYS)}"
        )
    return state


def head_out_features(state_dict: Mapping[str, Tensor], classifier: str) -> int | None:
    """Number of output classes of the ``classifier`` Linear in ``state_dict`` (``None`` if absent)."""
    weight = state_dict.get(f"{classifier}.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    arch: str,
    source: str,
    headless_ok: str | None = None,
) -> None:
    """``model.load_state_dict`` with every key required, and errors that name the arch and the keys.

    Args:
        model: the network to fill.
        state_dict: its weights.
        arch: architecture name, for messages.
        source: where the weights come from, for messages.
        headless_ok: dotted name of the classifier; when given, a file without any of its keys (a backbone
            saved without head) is accepted and the model keeps its freshly initialised head.

    Raises:
        WeightsFileError: missing or unexpected keys, or shape mismatches.
    """
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:  # shape mismatches raise even with strict=False
        raise WeightsFileError(f"weights from {source} do not fit {arch}: {e}") from e
    missing = result.missing_keys
    if headless_ok and not any(k.startswith(f"{headless_ok}.") for k in state_dict):
        missing = [k for k in missing if not k.startswith(f"{headless_ok}.")]
    if missing or result.unexpected_keys:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")

        raise WeightsFileError(
            f"weights from {source} do not fit {arch}: {len(missing)} missing keys "
            f"({few(missing)}) and {len(result.unexpected_keys)} unexpected keys "
            f"({few(result.unexpected_keys)}). Is the file for another architecture? "
            "Pass the matching model name, or weights='none'."
        )


__all__ = [
    "PROBE_TIMEOUT_S",
    "WeightsArg",
    "WeightsFileError",
    "WeightsUnavailableError",
    "extract_state_dict",
    "fetch_torchvision_weights",
    "head_out_features",
    "host_reachable",
    "hub_cache_path",
    "imagenet_fix_message",
    "load_state_dict_checked",
    "read_state_dict",
    "resolve_weights",
]
