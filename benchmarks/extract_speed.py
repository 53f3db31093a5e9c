"""Disc-extraction speed: studies per second (six discs, their lesion masks) on this machine.

Run: ``OMP_NUM_THREADS=1 python benchmarks/extract_speed.py [--n 6]``; writes
``benchmarks/results/extract_speed.json``. Uses phantom studies (``spinenet_lite.phantom``)
and, when the real SPIDER folder is there, also T2 SPACE studies (corners from masks).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from spinenet_lite.extract.discs import extract_discs, extract_masks
from spinenet_lite.results import machine_description, to_jsonable


def _phantom(n: int, seed: int) -> dict:
    from spinenet_lite.phantom import PhantomConfig, synth_patient

    studies = [synth_patient(i, seed, PhantomConfig()) for i in range(n)]
    t0 = time.perf_counter()
    n_discs = 0
    for st in studies:
        dv = extract_discs(st.scan, st.corners)
        extract_masks(st.lesions, dv.geometries)
        n_discs += len(dv)
    dt = time.perf_counter() - t0
    return {"studies": n, "discs": n_discs, "seconds": dt, "studies_per_s": n / dt,
            "scan_shape": list(studies[0].scan.shape), "includes": "extract_discs + extract_masks"}


def _spider(n: int) -> dict:
    from spinenet_lite.datasets.spider import default_spider_dir
    from spinenet_lite.extract.landmarks import corners_from_vertebra_mask, read_space_study, space_patients

    root = default_spider_dir()
    pats = space_patients(root)[:n]
    data = [read_space_study(root, p) for p in pats]
    t0 = time.perf_counter()
    for scan, mask in data:
        corners, _ = corners_from_vertebra_mask(mask)
        extract_discs(scan, corners, resample_slice_mm=4.0)
    dt = time.perf_counter() - t0
    return {"studies": len(pats), "seconds": dt, "studies_per_s": len(pats) / dt,
            "includes": "corners_from_vertebra_mask + extract_discs (4 mm resampling)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=6, help="studies per source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "extract_speed.json"))
    args = parser.parse_args()
    record: dict = {"benchmark": "extract_speed", "machine": machine_description()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = (("phantom", lambda: _phantom(args.n, args.seed)),
                   ("spider_space", lambda: _spider(args.n)))
        for name, fn in sources:
            try:
                record[name] = fn()
            except Exception as exc:  # a source not available here: say so in the record
                record[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
            print(name, record[name])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_jsonable(record), indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
