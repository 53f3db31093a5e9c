"""Synthetic-cohort speed: patients per second with 1 and 2 worker processes.

Usage::

    python benchmarks/synth_speed.py [--patients 8] [--seed 0]

Writes ``benchmarks/results/synth_speed.json`` and prints the figures. Each run writes a
full cohort (rendering, DICOM series, truth.npz) into a temporary folder with the default
:class:`~spinenet_lite.phantom.PhantomConfig`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from spinenet_lite.phantom import PhantomConfig, synth_patient, write_cohort
from spinenet_lite.results import machine_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth_speed.json"))
    args = parser.parse_args()
    config = PhantomConfig()
    synth_patient(0, args.seed, config)  # warm imports and caches
    record: dict = {"patients": args.patients, "seed": args.seed, "machine": machine_description(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": {}}
    start = time.process_time()
    for i in range(args.patients):
        synth_patient(i, args.seed, config)
    record["cpu_s_per_patient_generation_only"] = round((time.process_time() - start) / args.patients, 3)
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            write_cohort(Path(tmp) / "c", args.patients, args.seed, workers=workers, config=config,
                         progress=False)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        record["runs"][f"workers_{workers}"] = {
            "wall_s": round(wall, 2), "patients_per_s": round(args.patients / wall, 3),
            "s_per_patient": round(wall / args.patients, 3),
            "main_process_cpu_s": round(cpu, 2), "mb_per_patient": round(size / args.patients / 1e6, 2)}
        print(f"workers={workers}: {args.patients / wall:.2f} patients/s "
              f"({wall / args.patients:.2f} s/patient, {size / args.patients / 1e6:.1f} MB/patient)")
    print(f"generation only, one core: {record['cpu_s_per_patient_generation_only']:.2f} CPU s/patient")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
