"""Training throughput of SpineNet: samples per second for several widths and branch points.

One full training step per iteration, as :func:`spinenet_lite.engine.training.train` does it: uint8
batch -> float, batched augmentation on the batch's device, forward (bf16 autocast and
channels-last on CUDA), class-weighted multi-task loss, backward, SGD step. On CUDA the
model's FLOPs per sample give the achieved TFLOP/s, compared with the bf16 matrix-multiply
peak measured in the same run with a large matmul.

Usage::

    python benchmarks/train_throughput.py                 # CPU (and CUDA if present)
    python benchmarks/train_throughput.py --device cuda --cuda-iters 20 --cuda-batch 256

Writes ``benchmarks/results/train_throughput_<device>.json``.

``--loop`` times the real training loop (:func:`spinenet_lite.engine.training.train` on
random uint8 discs, no validation) with the fast-path options of
:class:`~spinenet_lite.config.TrainConfig` switched on one after the other: ``baseline``,
``+device_data``, ``+fused_optimizer``, ``+big_batch`` (``--big-batch`` with
:func:`~spinenet_lite.config.scaled_lr` and one warm-up epoch), ``+compile``. The rate of a
setting is the training discs over the time of its last epoch (the first pays for cuDNN
autotuning and compiling). On CUDA each row also has the achieved TFLOP/s and the fraction
of the bf16 matmul peak measured in the same run. Writes
``benchmarks/results/train_loop_throughput_<device>.json`` (config, commit, device)::

    python benchmarks/train_throughput.py --loop --device cuda        # the paper's width, conv5
    python benchmarks/train_throughput.py --loop --tiny --device cpu  # plumbing, < 1 min on a CPU

On a GPU machine (a copy of the tree, pydicom carried as a wheel as in
``data/results/README.md``)::

    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD SPINENET_GIT_COMMIT=<commit of the tree>
    python3 benchmarks/train_throughput.py --loop --device cuda --out /tmp/bench

CPU numbers (``--tiny`` or not) say nothing about a GPU: the file says so in ``note``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spinenet_lite.config import TrainConfig, get_tier, scaled_lr
from spinenet_lite.errors import ConfigError
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


CPU_NOTE = ("CPU numbers at a tiny size: they measure the plumbing of the options on this CPU and say "
            "nothing about GPU throughput; GPU numbers come only from a run with --device cuda")

LOOP_SETTINGS: tuple[str, ...] = ("baseline", "+device_data", "+fused_optimizer", "+big_batch", "+compile")
"""The settings of ``--loop``, each with every option of the ones before it."""


@dataclass
class RandomDiscs:
    """Random uint8 discs ``volumes (N, 9, H, W)`` and labels ``(N, T)`` for timing the loop."""

    volumes: np.ndarray
    labels: np.ndarray


def random_discs(n: int, size: tuple[int, int] = (112, 224), seed: int = 0) -> RandomDiscs:
    """``n`` random discs of ``size`` (rows, columns) with random labels of every task."""
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 256, (n, 9, *size), dtype=np.uint8)
    labels = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], 1).astype(np.int64)
    return RandomDiscs(vol, labels)


def loop_configs(base: TrainConfig, big_batch: int) -> list[tuple[str, TrainConfig]]:
    """The :data:`LOOP_SETTINGS`: ``base`` and the options switched on one after the other.

    ``+big_batch`` trains at ``big_batch`` with ``scaled_lr(base.lr, base.batch_size, big_batch)``
    and one warm-up epoch.
    """
    dd = base.replace(device_data=True)
    fused = dd.replace(fused_optimizer=True)
    big = fused.replace(batch_size=big_batch, lr=scaled_lr(base.lr, base.batch_size, big_batch),
                        warmup_epochs=1)
    return list(zip(LOOP_SETTINGS, [base, dd, fused, big, big.replace(compile=True)]))


def loop_rate(config: TrainConfig, data: Any, size: tuple[int, int]) -> dict[str, Any]:
    """Training discs per second of the real loop: the last of ``config.max_epochs`` epochs.

    Returns
    -------
    dict
        ``samples_per_s``, ``epoch_s`` (every epoch, seconds), ``forward_macs_per_sample``,
        ``train_flops_per_sample`` (3 x 2 x MACs).
    """
    from spinenet_lite.engine.training import train

    torch.manual_seed(config.seed)
    model = SpineNet(branch_point=config.branch_point, width=config.width, dropout=config.dropout,
                     input_size=size)
    macs = count_flops(model)
    res = train(config, data, None, progress=False, model=model)
    times = [float(h["epoch_time_s"]) for h in res.history]
    n = int(data.volumes.shape[0])
    return {"samples_per_s": round(n / max(times[-1], 1e-9), 2), "epoch_s": times,
            "forward_macs_per_sample": macs, "train_flops_per_sample": 6 * macs,
            "final_train_loss": float(res.history[-1]["train_loss"])}


def run_loop(device: torch.device, base: TrainConfig, big_batch: int, n_discs: int,
             size: tuple[int, int], settings: list[str] | None = None) -> dict[str, Any]:
    """Time :func:`loop_rate` for every setting of :func:`loop_configs`; return the results record."""
    cuda = device.type == "cuda"
    peak = None
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        peak = matmul_peak_tflops(device, torch.bfloat16, 8192, 50)
    data = random_discs(n_discs, size, seed=base.seed)
    rows = []
    for name, cfg in loop_configs(base, big_batch):
        if settings is not None and name not in settings:
            continue
        r = {"setting": name, "batch": cfg.batch_size, "lr": cfg.lr, "device_data": cfg.device_data,
             "fused_optimizer": cfg.fused_optimizer, "compile": cfg.compile,
             "warmup_epochs": cfg.warmup_epochs, **loop_rate(cfg, data, size)}
        r["achieved_tflops"] = round(r["samples_per_s"] * r["train_flops_per_sample"] / 1e12, 4)
        if peak:
            r["fraction_of_bf16_peak"] = round(r["achieved_tflops"] / peak, 4)
        rows.append(r)
        print(f"{device.type:4s} {name:18s} batch {cfg.batch_size:<4} {r['samples_per_s']:10.1f} samples/s"
              + (f"  {100 * r['fraction_of_bf16_peak']:.1f} % of the bf16 peak" if peak else ""), flush=True)
        if cuda:
            torch.cuda.empty_cache()
    rec: dict[str, Any] = {
        "benchmark": "train_loop_throughput", "device": device.type, "commit": git_commit(),
        "machine": machine_description(), "n_train_discs": n_discs, "slice_size": list(size),
        "config": base.to_dict(), "big_batch": big_batch,
        "precision": "bf16 autocast, channels_last" if cuda else "fp32", "results": rows}
    if cuda:
        rec["bf16_matmul_peak_tflops"] = round(peak, 3)
    else:
        rec["note"] = CPU_NOTE
    return rec


def loop_main(args: argparse.Namespace) -> int:
    """``--loop``: the real training loop with the options on in turn, one file per device."""
    dev = torch.device("cuda" if args.device in ("cuda", "all") and torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and dev.type != "cuda":
        print("no CUDA device; nothing to do")
        return 1
    tiny = args.tiny
    base = get_tier("paper", device=dev.type, width=0.0625 if tiny else args.width,
                    branch_point=args.branch_point, batch_size=args.batch or (8 if tiny else 64),
                    max_epochs=args.epochs, train_augment=True, restore_best=False,
                    deterministic=not (dev.type == "cuda"), num_threads=args.threads, seed=0)
    big = args.big_batch or (4 * base.batch_size)
    n = args.discs or (32 if tiny else 5760)
    size = (48, 96) if tiny else (112, 224)
    if big > n:
        raise ConfigError(f"--big-batch {big} is larger than the {n} training discs; give more --discs")
    settings = list(LOOP_SETTINGS)
    if tiny and dev.type == "cpu" and not args.tiny_compile:
        settings.remove("+compile")  # compiling alone takes minutes on a small CPU
    rec = run_loop(dev, base, big, n, size, settings)
    rec["tiny"] = tiny
    if "+compile" not in settings:
        rec["skipped"] = {"+compile": "left out of --tiny on a CPU (compiling takes minutes); "
                                      "--tiny-compile times it"}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"train_loop_throughput_{dev.type}.json"
    path.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


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
    g = p.add_argument_group("--loop: the real training loop with the fast-path options in turn")
    g.add_argument("--loop", action="store_true", help="time the training loop, not single steps")
    g.add_argument("--tiny", action="store_true", help="width 0.0625, 32 discs of 48 x 96: < 1 min on a CPU")
    g.add_argument("--tiny-compile", action="store_true", help="with --tiny on a CPU: time +compile too")
    g.add_argument("--width", type=float, default=1.0)
    g.add_argument("--branch-point", default="conv5")
    g.add_argument("--batch", type=int, default=None, help="baseline batch (default 64; tiny 8)")
    g.add_argument("--big-batch", type=int, default=None, help="batch of +big_batch (default 4 x --batch)")
    g.add_argument("--discs", type=int, default=None, help="training discs (default 5760; tiny 32)")
    g.add_argument("--epochs", type=int, default=2, help="epochs per setting; the last is timed")
    args = p.parse_args(argv)
    if args.loop:
        return loop_main(args)
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
