"""Throughput of the Ray executor with N CPU workers against one worker, on small units that do not share a core
(issue 11: "the grid's throughput with N workers at least 0.9 N times one worker's").

    python benchmarks/ray_scaling.py [--workers 1,2] [--units 16] [--size 512] [--steps 1000]

Each unit is ``replicate.experiments.executors.demo_unit`` (a seeded least-squares SGD, one torch thread), run
through ``RayExecutor`` on a local Ray instance started with ``num_cpus=N`` (one unit a CPU) into a fresh run
folder; the wall time excludes Ray's start-up. Prints units/s per N and the ratio to N x the one-worker rate.
On a shared machine the ratio is only as good as the idle cores: the line says how many cores the OS reports.
A benchmark, nothing passes or fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # loopback only
    from replicate.experiments.executors import RayExecutor, UnitTask, demo_unit

    rates = {}
    for n in [int(w) for w in args.workers.split(",")]:
        ex = RayExecutor(num_cpus=n)
        try:
            tasks = [UnitTask(f"bench|{n}|{i}", demo_unit, (i, args.steps, args.size)) for i in range(args.units)]
            with tempfile.TemporaryDirectory() as tmp:
                ex.run(tasks[:n], Path(tmp) / "warm", progress=False)      # start the worker processes
                t0 = time.perf_counter()
                ex.run(tasks, Path(tmp) / "run", progress=False)
                dt = time.perf_counter() - t0
        finally:
            ex.close()
        rates[n] = args.units / dt
        base = rates[min(rates)] / min(rates)
        print(f"workers {n}: {rates[n]:.2f} units/s ({dt:.1f} s for {args.units}); "
              f"ratio to {n} x one worker: {rates[n] / (n * base):.2f}  [os.cpu_count() = {os.cpu_count()}]",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
