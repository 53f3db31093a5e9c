"""Training throughput of SpineNet: samples per second for several widths and branch points.

One full training step per iteration, as :func:`spinenet_lite.engine.training.train` does it: uint8
batch -> float, batched augmentation on the batch's device, forward (bf16 autocast and
channels-last on CUDA), class-weighted multi-task loss, backward, SGD step. On CUDA the
model's FLOPs per sample give the achieved TFLOP/s, compared with the bf16 matrix-multiply
peak measured in the same run with a large matmul.

Usage::

    python benchmarks/train_throughput.py                 # CPU (and CUDA if present)
    python benchmarks/train_throughput.py --device cuda --iters 20 --batch 256

Writes ``benchmarks/results/train_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from spinenet_lite.nn.augment import apply_transforms, sample_transforms
from spinenet_lite.nn.losses import class_weights, multitask_loss
from spinenet_lite.nn.model import SpineNet, count_flops
from spinenet_lite.results import git_commit, machine_description
from spinenet_lite.tasks import N_CLASSES, TASK_NAMES

OUT_DIR = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Measured dense matmul throughput (TFLOP/s) with ``n x n`` operands."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def train_step_rate(width: float, branch_point: str, device: torch.device, batch: int, iters: int,
                    warmup: int, seed: int = 0) -> dict:
    """Samples per second of full training steps for one network."""
    torch.manual_seed(seed)
    cuda = device.type == "cuda"
    model = SpineNet(branch_point=branch_point, width=width).to(device)
    macs = count_flops(model)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    x8 = torch.from_numpy(rng.integers(0, 256, (batch, 9, 112, 224), dtype=np.uint8)).to(device)
    y = torch.from_numpy(np.stack([rng.integers(0, N_CLASSES[t], batch) for t in TASK_NAMES], 1)).to(device)
    cw = {k: v.to(device) for k, v in class_weights(y.cpu()).items()}
    gen = torch.Generator().manual_seed(seed)

    def step() -> None:
        x = x8.float().div_(255.0)
        x = apply_transforms(x, sample_transforms(batch, gen, device))
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss, _ = multitask_loss({k: v.float() for k, v in logits.items()}, y, class_weights=cw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    dt = time.perf_counter() - t
    rate = batch * iters / dt
    flops_per_sample = 3 * 2 * macs  # forward + two backward products, 2 FLOPs per multiply-add
    return {"width": width, "branch_point": branch_point, "batch": batch, "iters": iters,
            "samples_per_s": round(rate, 2), "step_s": round(dt / iters, 4),
            "forward_macs_per_sample": macs, "train_flops_per_sample": flops_per_sample,
            "achieved_tflops": round(rate * flops_per_sample / 1e12, 4),
            "params": sum(p.numel() for p in model.parameters())}


def run(device: torch.device, widths: list[float], branch_points: list[str], batch: int, iters: int,
        warmup: int) -> dict:
    """Benchmark every (width, branch point) on ``device``; return the results record."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        peak = matmul_peak_tflops(device, torch.bfloat16, 8192, 50)
        peak_name = "bf16_matmul_peak_tflops"
    else:
        peak = matmul_peak_tflops(device, torch.float32, 2048, 5)
        peak_name = "fp32_matmul_peak_tflops"
    rows = []
    for w in widths:
        for bp in branch_points:
            r = train_step_rate(w, bp, device, batch, iters, warmup)
            r["fraction_of_peak"] = round(r["achieved_tflops"] / peak, 4)
            rows.append(r)
            print(f"{device.type:4s} width {w:<5} branch {bp:<5} batch {batch:<4} "
                  f"{r['samples_per_s']:9.1f} samples/s  {r['achieved_tflops']:.3f} TFLOP/s  "
                  f"{100 * r['fraction_of_peak']:.1f} % of peak", flush=True)
            if cuda:
                torch.cuda.empty_cache()
    return {"benchmark": "train_throughput", "device": device.type, "commit": git_commit(),
            "machine": machine_description(), "precision": "bf16 autocast, channels_last" if cuda else "fp32",
            peak_name: round(peak, 3), "results": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", help='"cpu", "cuda" or "all" (CPU, and CUDA when present)')
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    p.add_argument("--branch-points", nargs="+", default=["none", "conv5"])
    p.add_argument("--cpu-batch", type=int, default=4)
    p.add_argument("--cpu-iters", type=int, default=3)
    p.add_argument("--cuda-batch", type=int, default=256)
    p.add_argument("--cuda-iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; nothing to do")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for dev in devices:
        cuda = dev.type == "cuda"
        rec = run(dev, args.widths, args.branch_points, args.cuda_batch if cuda else args.cpu_batch,
                  args.cuda_iters if cuda else args.cpu_iters, warmup=3 if cuda else 1)
        path = args.out / f"train_throughput_{dev.type}.json"
        path.write_text(json.dumps(rec, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
