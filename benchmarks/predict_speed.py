"""``predict`` speed: seconds per study on this CPU, split into its steps.

Steps: load, localise, extract, TTA, hotspots, report.

Run: ``python benchmarks/predict_speed.py [--n 3] [--threads 2] [--weights NAME_OR_PATH]``;
writes ``benchmarks/results/predict_speed_cpu.json``. Studies are synthetic (the default
phantom acquisition, written as DICOM so loading is real). Vertebra corners come from the
shipped localiser when it is installed, else from the phantom's truth (then ``localise``
is ~0 s and the record says so). The grader is the shipped lite model; when it is not in
this checkout, a randomly initialised network of the same size (width 0.25, conv5) stands
in: TTA and per-map hotspot times are the same, but a random network calls many more
findings, so ``hotspots`` per study is then an upper bound (see ``seconds_per_map``).
The goal (issue 8) is at most 15 s per study on 2 CPU cores with the lite weights. Wall and
CPU seconds are both recorded, with the load average before and after the run: on a shared
machine the wall clock overstates the time the work itself takes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_S = 15.0
STEPS = ("load", "localise", "extract", "tta", "hotspots", "report")


def _grader(name: str | None, tmp: Path) -> tuple[str, str]:
    """The weights to use and a note on where they came from."""
    from spinenet_lite.engine.weights import verify_weights
    from spinenet_lite.errors import SpineNetError

    try:
        info = verify_weights(name, kind="grader")
        return info["path"], f"{info['name']} sha256 {info['sha256']}"
    except SpineNetError as exc:
        if name is not None:
            raise
        import torch

        from spinenet_lite.engine.checkpoint import save_checkpoint
        from spinenet_lite.nn.model import SpineNet

        kw = {"branch_point": "conv5", "width": 0.25, "dropout": 0.5}
        torch.manual_seed(0)
        path = tmp / "random_lite.pt"
        save_checkpoint({"model": SpineNet(**kw).state_dict(), "model_kwargs": kw}, path)
        return str(path), f"random SpineNet(width=0.25) stand-in: shipped grader unavailable ({exc})"


def _localiser_ready() -> bool:
    import importlib.util

    from spinenet_lite.engine.weights import verify_weights
    from spinenet_lite.errors import SpineNetError

    if importlib.util.find_spec("spinenet_lite.localise.inference") is None:
        return False
    try:
        verify_weights(None, kind="localiser")
    except SpineNetError:
        return False
    return True


def _loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine slows the wall clock)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3, help="studies (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default 2: the goal's 2 cores)")
    parser.add_argument("--weights", default=None, help="grader name or path (default: shipped lite model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "predict_speed_cpu.json"))
    args = parser.parse_args()

    import torch

    from spinenet_lite.app import predict
    from spinenet_lite.io.dicom import write_dicom_series
    from spinenet_lite.phantom import synth_patient
    from spinenet_lite.results import machine_description, to_jsonable

    torch.set_num_threads(args.threads)
    load_start = _loadavg()
    use_localiser = _localiser_ready()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights, weights_note = _grader(args.weights, tmp)
        for i in range(args.n):
            st = synth_patient(i, args.seed)
            folder = tmp / f"s{i}" / "dicom"
            write_dicom_series(st.scan, folder)
            t0 = time.perf_counter()
            pred = predict(folder, tmp / f"s{i}" / "out", weights=weights, device=args.device,
                           corners=None if use_localiser else st.corners, progress=False)
            total = time.perf_counter() - t0
            row = {k: pred.timings.get(k, 0.0) for k in STEPS}
            row.update({f"{k}_cpu": pred.cpu_timings.get(k, 0.0) for k in STEPS})
            row.update(total=total, discs=len(pred.levels), maps=len(pred.maps),
                       scan_shape=list(st.scan.shape))
            rows.append(row)
            print(f"study {i}: " + ", ".join(f"{k} {row[k]:.2f} s" for k in (*STEPS, "total"))
                  + f" ({row['maps']} hotspot maps)")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in (*STEPS, "total")}
    mean_cpu = {k: float(np.mean([r[f"{k}_cpu"] for r in rows])) for k in STEPS}
    mean_cpu["total"] = sum(mean_cpu.values())
    n_maps = sum(r["maps"] for r in rows)
    per_map = sum(r["hotspots"] for r in rows) / n_maps if n_maps else None
    record = {
        "benchmark": "predict_speed", "machine": machine_description(), "torch_threads": args.threads,
        "device": args.device, "weights": weights_note,
        "corners": "shipped localiser" if use_localiser else "phantom truth (localiser not available)",
        "load_average_start": load_start, "load_average": _loadavg(),
        "studies": rows, "mean_seconds_per_study": mean, "mean_cpu_seconds_per_study": mean_cpu,
        "seconds_per_hotspot_map": per_map,
        "goal_seconds_per_study": GOAL_S, "meets_goal": mean["total"] <= GOAL_S,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_jsonable(record), indent=2) + "\n")
    print("mean per study (wall): " + ", ".join(f"{k} {v:.2f} s" for k, v in mean.items()))
    print("mean per study (CPU):  " + ", ".join(f"{k} {v:.2f} s" for k, v in mean_cpu.items()))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
