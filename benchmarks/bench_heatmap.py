"""What a heat map costs per image, relative to plain inference (batch 1, CPU, random weights).

For each model: plain forward (``torch.inference_mode``), the explain path (Grad-CAM: forward + backward to
the hooked layer; ViT attention: forward with ``capture_attention`` hooks, all layers recorded for rollout)
and ``heatmap_model`` (logits and CAM / last-block attention from the same pass, what an exported bundle
runs). Medians over ``--runs`` timed runs after warm-up, the variants timed round-robin. Machines are shared
and noisy: compare the ratios within one run, not the milliseconds across runs.

    python benchmarks/bench_heatmap.py [--runs 15] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dermascan.explain import attention_maps, grad_cam, heatmap_model
from dermascan.models import create_model, model_info

#: (name, image side): the brief's two models at full size, and the CPU demo models.
CASES = [("resnet50", 224), ("vit_b_16", 224), ("resnet18", 64), ("vit_tiny", 64)]


def interleaved_medians(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 3) -> dict[str, float]:
    """Median ms of each function, timed round-robin so that load from other processes hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(name: str, size: int, runs: int) -> dict[str, float]:
    vit = model_info(name)["family"] == "vit"
    torch.manual_seed(0)
    model = create_model(name, image_size=size).eval()
    if vit:
        # torchvision zero-initialises the ViT head; give Grad-CAM non-zero gradients to propagate.
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    head = heatmap_model(model).eval()
    x = torch.randn(1, 3, size, size)

    def plain() -> object:
        with torch.inference_mode():
            return model(x)

    def fused() -> object:
        with torch.inference_mode():
            return head(x)

    fns: dict[str, Callable[[], object]] = {"plain": plain, "gradcam": lambda: grad_cam(model, x), "head": fused}
    if vit:
        fns["attention"] = lambda: attention_maps(model, x)
    return interleaved_medians(fns, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="only the small 64 px models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in CASES if not args.quick or c[1] == 64]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, median of {args.runs} runs (ms)")
    header = f"{'model':<10} {'px':>4} {'plain':>8} {'grad-cam':>9} {'x':>6} {'attn':>8} {'x':>6} {'head':>8} {'x':>6}"
    print(header)
    print("-" * len(header))
    for name, size in cases:
        r = bench(name, size, args.runs)
        p = r["plain"]
        attn = f"{r['attention']:8.1f} {r['attention'] / p:6.2f}" if "attention" in r else f"{'-':>8} {'-':>6}"
        print(
            f"{name:<10} {size:>4} {p:8.1f} {r['gradcam']:9.1f} {r['gradcam'] / p:6.2f} {attn} "
            f"{r['head']:8.1f} {r['head'] / p:6.2f}",
            flush=True,
        )
    print(
        "\nx = time / plain forward. grad-cam: forward + backward to the hooked layer (ViT: last block's ln_1); "
        "attn: forward with capture_attention (explain path, last-block + rollout); head: heatmap_model, "
        "logits + CAM (CNN, all classes) or last-block CLS attention (ViT) in one pass."
    )


if __name__ == "__main__":
    main()
