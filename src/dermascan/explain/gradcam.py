"""Grad-CAM (Selvaraju et al., 2017) from hooks on a named layer; ``forward`` is never edited.

For class ``c`` and the activations ``A`` of the hooked layer, ``alpha_k = mean_ij d y_c / d A_k[i, j]`` and
the map is ``ReLU(sum_k alpha_k A_k)``.

Which layer:

* CNN: ``model_info(arch)["gradcam_layer"]``, the last stage (``layer4`` of a ResNet), ``(B, C, h, w)``.
* ViT: Grad-CAM is supported on the tokens that enter the last block's attention, i.e. the output of its
  first LayerNorm (``encoder.layers.encoder_layer_<L-1>.ln_1`` in torchvision, ``blocks.<L-1>.norm1`` in
  timm), ``(B, N, D)``; the patch tokens are reshaped to the patch grid and the channel weights are averaged
  over patch tokens only. Not the block *output* (``model_info``'s ``gradcam_layer`` for a ViT): the
  classifier reads only the class token after the last block, so the patch tokens there get zero gradient
  and the map would be empty. This is the usual choice for ViTs (e.g. pytorch-grad-cam's ``norm1``).

Gradients are taken with ``torch.autograd.grad`` with respect to the hooked activation only, so no
``.grad`` is left on the parameters and frozen models work (the activation is made a graph leaf when
nothing upstream requires grad).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from dermascan.explain.attention import is_vit, to_grid, vit_layout
from dermascan.models import model_info


@dataclass
class GradCAMResult:
    """Grad-CAM of one batch.

    Attributes:
        maps: ``(B, h, w)`` ReLU'd class-activation maps, not normalised (render does that).
        logits: ``(B, K)`` class scores of the same forward pass, detached.
        class_index: ``(B,)`` the class each map explains.
        layer: the module the maps were taken from.
    """

    maps: Tensor
    logits: Tensor
    class_index: Tensor
    layer: str


def _last_vit_block(model: nn.Module) -> tuple[str, nn.Module]:
    container = "encoder.layers" if isinstance(model, VisionTransformer) else "blocks"
    # Child names differ (torchvision: encoder_layer_11, timm: 11), so read the last one instead of guessing.
    name, block = list(model.get_submodule(container).named_children())[-1]
    return f"{container}.{name}", block


def default_gradcam_layer(model: nn.Module) -> str:
    """The layer Grad-CAM hooks by default (see the module docstring for why).

    Raises:
        ValueError: no ``model.arch`` and not a recognisable ViT; pass ``layer=`` explicitly.
    """
    if is_vit(model):
        name, block = _last_vit_block(model)
        for norm in ("ln_1", "norm1"):
            if hasattr(block, norm):
                return f"{name}.{norm}"
        raise ValueError(f"the last block of {type(model).__name__} has no ln_1/norm1; pass layer= explicitly")
    arch = getattr(model, "arch", None)
    if arch is None:
        raise ValueError(
            f"{type(model).__name__} has no .arch (build it with dermascan.models.create_model) and no default "
            "Grad-CAM layer; pass layer='<dotted module name>' (e.g. 'layer4')"
        )
    layer = model_info(arch)["gradcam_layer"]
    if not layer:
        raise ValueError(f"model_info({arch!r}) names no gradcam_layer; pass layer= explicitly")
    return str(layer)


def _as_index(class_index: int | Sequence[int] | Tensor | None, logits: Tensor) -> Tensor:
    b = logits.shape[0]
    if class_index is None:
        return logits.argmax(dim=1)  # (B,)
    idx = torch.as_tensor(class_index, dtype=torch.long, device=logits.device).reshape(-1)  # (B,) or (1,)
    if idx.numel() == 1:
        idx = idx.expand(b)  # (B,)
    if idx.numel() != b:
        raise ValueError(f"class_index has {idx.numel()} entries for a batch of {b}")
    k = logits.shape[1]
    if bool(((idx < 0) | (idx >= k)).any()):
        raise ValueError(f"class_index {idx.tolist()} out of range for {k} classes")
    return idx


def grad_cam(
    model: nn.Module,
    x: Tensor,
    class_index: int | Sequence[int] | Tensor | None = None,
    layer: str | None = None,
) -> GradCAMResult:
    """Grad-CAM maps for a batch, one forward and one backward pass.

    The model runs in eval mode (BatchNorm running statistics, no dropout) and its previous mode is restored.
    It needs autograd, so not under ``torch.inference_mode``; ``torch.no_grad`` around the call is fine,
    gradients are enabled inside.

    Args:
        model: a CNN (or ViT, see the module docstring) built by ``create_model``.
        x: ``(B, 3, H, W)`` normalised input.
        class_index: class to explain: one int for all images, one per image, or ``None`` for each image's
            predicted class.
        layer: dotted module name to hook; ``None`` uses :func:`default_gradcam_layer`.

    Returns:
        :class:`GradCAMResult` with ``maps`` ``(B, h, w)``: the layer's spatial size (CNN) or the patch grid
        (ViT).

    Raises:
        ValueError: bad ``class_index`` or ``layer``.
        RuntimeError: called under ``torch.inference_mode``.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "grad_cam needs autograd and cannot run under torch.inference_mode(); call it outside that block "
            "(torch.no_grad() is fine), or use heatmap_model for a gradient-free CAM"
        )
    layer = layer or default_gradcam_layer(model)
    try:
        module = model.get_submodule(layer)
    except AttributeError as e:
        raise ValueError(f"{type(model).__name__} has no submodule {layer!r}") from e

    captured: list[Tensor] = []

    def keep(_m: nn.Module, _args: Any, output: Tensor) -> Tensor | None:
        if not isinstance(output, Tensor):
            raise ValueError(f"layer {layer!r} returns {type(output).__name__}, not a tensor; hook another layer")
        if not output.requires_grad:
            # Frozen upstream (or frozen model): make the activation a leaf so d logit / d activation exists.
            output = output.detach().requires_grad_(True)
            captured.append(output)
            return output
        captured.append(output)
        return None

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x)  # (B, K)
            if not captured:
                raise ValueError(f"layer {layer!r} did not run in the forward pass")
            act = captured[-1]
            idx = _as_index(class_index, logits.detach())
            # Images are independent in eval mode, so the gradient of the sum gives each image its own.
            score = logits.gather(1, idx[:, None]).sum()
            (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
        model.train(was_training)

    act, grad = act.detach(), grad.detach()
    if act.dim() == 4:  # CNN feature map (B, C, h, w)
        weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        cam = (weights * act).sum(dim=1)  # (B, h, w)
    elif act.dim() == 3:  # ViT tokens (B, N, D): keep the patch tokens, drop class/register tokens
        vl = vit_layout(model)
        patches, patch_grads = act[:, vl.num_prefix_tokens :], grad[:, vl.num_prefix_tokens :]  # (B, P, D)
        weights = patch_grads.mean(dim=1, keepdim=True)  # (B, 1, D)
        cam = (weights * patches).sum(dim=-1)  # (B, P)
        cam = to_grid(cam, (x.shape[-2] // vl.patch_size, x.shape[-1] // vl.patch_size))  # (B, h, w)
    else:
        raise ValueError(f"layer {layer!r} output has shape {tuple(act.shape)}; expected (B,C,h,w) or (B,N,D)")
    return GradCAMResult(maps=torch.relu(cam), logits=logits.detach(), class_index=idx, layer=layer)


__all__ = ["GradCAMResult", "default_gradcam_layer", "grad_cam"]
