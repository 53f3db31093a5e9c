"""How should a one-slice disc (a mid-sagittal PNG) be fed to a nine-slice model? Measured.

The paper zero-pads series with fewer than nine slices; a single real slice then sits
among eight empty ones, which a model trained on nine-slice volumes never saw. This
script scores the shipped graders on the 178 graded T2 SPACE discs of the shared SPIDER
subset three ways: every 4 mm slab of the disc (what the study holds), the centre slab
zero-padded (what a PNG gives today), and the centre slab replicated into all nine
positions. Centre view, no test-time augmentation. ``spinenet_real`` was trained on these
patients (in-sample); ``spinenet_synthetic`` never saw a real disc.

Usage::

    python benchmarks/spider_single_slice.py [--data-dir ../shared/data/spider]

Writes ``benchmarks/results/spider_single_slice.json``; needs the SPIDER folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from spinenet_lite.engine.evaluation import predict, predict_labels
from spinenet_lite.engine.weights import load_grader
from spinenet_lite.experiments import spider_cv as se
from spinenet_lite.results import git_commit, machine_description

OUT = Path(__file__).resolve().parent / "results" / "spider_single_slice.json"


def inputs(volumes: np.ndarray) -> dict[str, np.ndarray]:
    """The three ways to present discs ``(N, 9, H, W)`` uint8: slabs, zero-padded and replicated centre."""
    return {"slabs": volumes, "centre_zero_padded": se.single_slice(volumes),
            "centre_replicated": se.centre_replicated(volumes)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=None, help="SPIDER folder (default: the shared one)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    discs = se.cached_discs(args.data_dir, source="space", centre_only=False, progress=False)
    rows = {}
    for name in ("spinenet_synthetic", "spinenet_real"):
        model, info = load_grader(name)
        for how, vols in inputs(discs.volumes).items():
            pred = predict_labels(predict(model, vols, tta=False, device="cpu"))
            s = se.score(discs.labels, discs.narrowing_binary, pred)
            rows.setdefault(name, {"sha256": info["sha256"]})[how] = {
                "per_class_accuracy": {t: v["per_class_accuracy"] for t, v in s["tasks"].items()},
                "lootus": s["lootus"]}
            acc = ", ".join(f"{t} {100 * v['per_class_accuracy']:.1f}" for t, v in s["tasks"].items())
            print(f"{name:18s} {how:20s} {acc}", flush=True)
    record = {"benchmark": "spider_single_slice", "commit": git_commit(), "machine": machine_description(),
              "n_discs": len(discs), "n_patients": discs.n_patients, "tta": False,
              "wall_time_s": round(time.perf_counter() - t0, 1), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
