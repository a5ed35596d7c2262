"""Test helper run under torchrun: trains the jobs listed in a JSON file, one after another.

It starts the process group itself, as a user's own launcher would.  A job with ``"argv"``
runs the command line ``bayes_halo.fit`` with those arguments; a job with ``"config"`` calls
``run_fit(RunConfig.from_flat(**config), out)`` (no runtime given: it joins the group), and every rank
saves the module it ends with as ``<out>/rank<r>.pt``.  Each rank lists the files it wrote
through the package (every output goes through :func:`bayes_halo.atomic.atomic_path`) in
``<first out>/../writes_rank<r>.json``.  ``"kill_after_saves": k`` makes rank 0 kill itself
(SIGKILL, no clean-up) right after writing its k-th checkpoint.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py jobs.json
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import bayes_halo.atomic as atomic
from bayes_halo.cli.fit import main as fit_main
from bayes_halo.pipeline import run_fit
from bayes_halo.training import trainer
from bayes_halo.config import RunConfig


def main(jobs_file: str) -> None:
    jobs = json.loads(Path(jobs_file).read_text())
    written: list[str] = []
    real_atomic_path, real_save = atomic.atomic_path, trainer.save_checkpoint

    def recording_atomic_path(path):
        written.append(str(path))
        return real_atomic_path(path)

    atomic.atomic_path = recording_atomic_path
    dist.init_process_group("gloo")  # env:// from torchrun's variables
    rank = dist.get_rank()
    for job in jobs:
        saves = []

        def save_then_die(path, state, limit=job.get("kill_after_saves")):
            real_save(path, state)
            saves.append(path)
            if len(saves) == limit:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.save_checkpoint = save_then_die if job.get("kill_after_saves") else real_save
        if "argv" in job:
            status = fit_main([*job["argv"], "--out", job["out"]])
            if status != 0:
                raise SystemExit(f"bayes_halo.fit exited with {status}")
        else:
            result = run_fit(RunConfig.from_flat(**job["config"]), job["out"], resume=job.get("resume", False),
                             progress=False)
            torch.save({k: v.cpu() for k, v in result.module.state_dict().items()},
                       Path(job["out"]) / f"rank{rank}.pt")
    (Path(jobs[0]["out"]).parent / f"writes_rank{rank}.json").write_text(json.dumps(written))
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
