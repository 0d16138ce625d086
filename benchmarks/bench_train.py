"""Training throughput (images/s) of the models DermaScan trains, fp32 and bf16/fp16 autocast.

Times full optimisation steps (forward, melanoma-focused loss, backward, AdamW) on random tensors, so the
figure is the model's cost, not the data loader's. Prints one row per (model, precision).

    python benchmarks/bench_train.py                 # cpu-demo (resnet18@64, vit_tiny@64), resnet50/vit_b_16@224
    python benchmarks/bench_train.py --device cuda   # on a GPU: adds fp16/bf16 autocast rows
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dermascan.models import create_model
from dermascan.training.losses import create_loss
from dermascan.training.optim import param_groups

CASES = [("resnet18", 64, 64), ("vit_tiny", 64, 64), ("resnet50", 224, 16), ("vit_b_16", 224, 16)]


def measure(arch: str, size: int, batch: int, device: str, precision: str, steps: int) -> float:
    model = create_model(arch, image_size=size).to(device).train()
    loss_fn = create_loss("weighted_ce_focal", class_weights=torch.ones(7, device=device))
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 7, (batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    times = []
    for i in range(steps + 2):  # two warm-up steps
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="architectures to run (default: all)")
    args = parser.parse_args()
    precisions = ["fp32", "bf16"] + (["fp16"] if args.device == "cuda" else [])
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'model':<10} {'size':>4} {'batch':>5} " + " ".join(f"{p + ' img/s':>11}" for p in precisions))
    for arch, size, batch in CASES:
        if args.only and arch not in args.only:
            continue
        figures = [measure(arch, size, batch, args.device, p, args.steps) for p in precisions]
        print(f"{arch:<10} {size:>4} {batch:>5} " + " ".join(f"{f:>11.1f}" for f in figures), flush=True)


if __name__ == "__main__":
    main()
