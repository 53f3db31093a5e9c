"""Batched torch augmentation vs a per-sample scipy.ndimage pipeline, side by side.

Both pipelines apply the same random training transforms (rotation, scale, x/y shift,
slice shift, slice flip, intensity) to the same batch of disc volumes; the scipy one does
it the straightforward way: one ``scipy.ndimage.affine_transform`` per slice (bilinear,
zero fill) in a Python loop over samples. The script checks that both agree, then reports
samples per second and the ratio, and writes
``benchmarks/results/augment_speed_<device>.json`` with the machine description.

Usage::

    python benchmarks/augment_speed.py                 # CPU, and CUDA when present
    python benchmarks/augment_speed.py --batch 64 --repeats 5 --device cpu
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from spinenet_lite.nn.augment import Transforms, apply_transforms, sample_transforms
from spinenet_lite.results import machine_description

OUT_DIR = Path(__file__).resolve().parent / "results"


def scipy_augment(x: np.ndarray, t: Transforms) -> np.ndarray:
    """Per-sample, per-slice reference implementation with ``scipy.ndimage``.

    Parameters
    ----------
    x : ndarray (N, S, H, W) float32
    t : Transforms (on the CPU)

    Returns
    -------
    ndarray (N, S, H, W) float32, the same convention as ``apply_transforms``.
    """
    N, S, H, W = x.shape
    out = np.zeros_like(x)
    centre = np.array([(H - 1) / 2.0, (W - 1) / 2.0])
    for n in range(N):
        a = math.radians(float(t.angle[n]))
        k = float(t.scale[n])
        d = np.array([float(t.shift_y[n]), float(t.shift_x[n])])  # (row, col)
        # forward map on (col, row) offsets from the centre: q = k R p + d, R = [[c, s], [-s, c]];
        # output -> input is p = R^T (q - d) / k, which on (row, col) order reads [[c, s], [-s, c]] / k
        c, s = math.cos(a), math.sin(a)
        rt_rc = np.array([[c, s], [-s, c]]) / k
        offset = centre - rt_rc @ (centre + d)
        vol = x[n]
        if bool(t.flip[n]):
            vol = vol[::-1]
        dz = int(t.shift_z[n])
        shifted = np.zeros_like(vol)
        if dz >= 0:
            shifted[dz:] = vol[: S - dz]
        else:
            shifted[:dz] = vol[-dz:]
        for z in range(S):
            out[n, z] = ndimage.affine_transform(shifted[z], rt_rc, offset=offset, order=1,
                                                 mode="grid-constant", cval=0.0)
        out[n] = np.clip(out[n] + float(t.intensity[n]), 0.0, 1.0)
    return out


def _time_pair(fa, fb, repeats: int, sync=lambda: None) -> tuple[float, float]:
    """Best wall time of ``fa`` and ``fb``, run alternately (fair on a shared, noisy machine)."""
    fa()
    sync()
    fb()
    best_a = best_b = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fa()
        sync()
        best_a = min(best_a, time.perf_counter() - t0)
        t0 = time.perf_counter()
        fb()
        best_b = min(best_b, time.perf_counter() - t0)
    return best_a, best_b


def run(device: str, batch: int, repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x_np = rng.random((batch, 9, 112, 224), dtype=np.float32)
    x_np = ndimage.uniform_filter(x_np, size=(1, 1, 5, 5))  # smooth-ish, like an image
    t = sample_transforms(batch, generator=seed)
    x = torch.from_numpy(x_np).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    td = t.to(device)

    ref = scipy_augment(x_np, t)
    ours = apply_transforms(x, td).cpu().numpy()
    diff = np.abs(ours - ref)
    interior = diff[:, :, 2:-2, 2:-2]

    t_torch, t_scipy = _time_pair(lambda: apply_transforms(x, td), lambda: scipy_augment(x_np, t),
                                  repeats, sync)
    return {
        "device": device,
        "batch": batch,
        "volume_shape": [9, 112, 224],
        "repeats": repeats,
        "timing": "best of repeats, torch and scipy alternated, after one warm-up each",
        "torch_threads": torch.get_num_threads(),
        "torch_batched_s": t_torch,
        "scipy_per_sample_s": t_scipy,
        "torch_samples_per_s": batch / t_torch,
        "scipy_samples_per_s": batch / t_scipy,
        "speedup": t_scipy / t_torch,
        "max_abs_diff_interior": float(interior.max()),
        "mean_abs_diff": float(diff.mean()),
        "machine": machine_description(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", action="append", help="cpu, cuda (default: cpu and cuda if present)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args.out.mkdir(parents=True, exist_ok=True)
    for dev in devices:
        res = run(dev, args.batch, args.repeats)
        name = "cuda" if dev.startswith("cuda") else "cpu"
        path = args.out / f"augment_speed_{name}.json"
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"{dev}: torch {res['torch_samples_per_s']:.0f} samples/s, scipy "
              f"{res['scipy_samples_per_s']:.0f} samples/s, speed-up {res['speedup']:.1f}x "
              f"(max |diff| interior {res['max_abs_diff_interior']:.2e}) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
