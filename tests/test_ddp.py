"""DistributedDataParallel on CPU: 2 gloo processes via torchrun train and stay in sync."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np, torch
    from dataclasses import dataclass
    from spinenet_lite.config import get_tier
    from spinenet_lite.nn.model import SpineNet
    from spinenet_lite.tasks import N_CLASSES, TASK_NAMES
    from spinenet_lite.engine.training import train

    @dataclass
    class D:
        volumes: np.ndarray
        labels: np.ndarray

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    n = 20
    vol = rng.integers(0, 256, (n, 9, 32, 64), dtype=np.uint8)
    lab = np.stack([rng.integers(0, N_CLASSES[t], n) for t in TASK_NAMES], 1).astype(np.int16)
    torch.manual_seed(int(os.environ["RANK"]))  # different start on purpose: DDP must sync it
    model = SpineNet(width=0.0625, input_size=(32, 64))
    cfg = get_tier("ci", batch_size=8, max_epochs=2, device="cpu", num_threads=1, train_augment=False)
    res = train(cfg.replace(restore_best=False), D(vol, lab), D(vol[:6], lab[:6]), out_dir=out + "/run",
                progress=False, model=model)
    torch.save(res.model.state_dict(), f"{out}/rank{os.environ['RANK']}.pt")
    # one file per rank: the two processes' prints to a shared stdout can interleave mid-line
    with open(f"{out}/rank{os.environ['RANK']}.txt", "w") as fh:
        fh.write(f"world {os.environ['WORLD_SIZE']} epochs {len(res.history)}")
''')


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_identical(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    if proc.returncode != 0 and "Address already in use" in proc.stderr:
        pytest.skip("no free port for the gloo rendezvous")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "world 2 epochs 2"
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # rank 0 wrote the run, with the same weights
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and all(torch.equal(last["model"][k], a[k]) for k in a)
    assert (tmp_path / "run" / "history.json").is_file()
