"""The grid's units on an executor (issue 11, item 4): ``python -m replicate run ... --executor local|ray``.

Each unit of the grid (one fold of one repeat of one cell, :meth:`replicate.experiments.grid.Runner.unit_key`)
becomes an :class:`replicate.experiments.executors.UnitTask` whose function, :func:`grid_unit`, is a module-level
function of picklable arguments: a small context (the preset, each patch store's folder and configuration, the run
folder, the device type, the weights folder), the cell, the repeat and the fold number. In a fresh process it
rebuilds what it needs (the patch stores opened from their folders, :func:`open_store`; the folds, re-derived from
the seeds; the net spec) and computes the unit with the same code as the in-process runner
(:meth:`Runner.run_unit`), so the numbers do not depend on where a unit ran. The executor writes each result
atomically to ``RUN/state/<slug(key)>.json`` (the runner's own resume files), so a run resumes across executors.

What runs where:

- on the driver: the cohort, the patch stores, and the deep-feature extraction of Tables 5-6 (one forward pass per
  (net, patch size), cached under ``RUN/features``) before the SVM units are submitted;
- in the units (the driver's process for ``local``, Ray worker processes for ``ray``): every training fold
  (Tables 3-4, sweeps) and every SVM fit (Tables 5-6), reading the features from ``RUN/features``.

``RUN`` (and the patch stores) must be on storage every Ray node sees. Threads: every unit pins torch's intra-op
threads to ``unit_threads`` (default: the driver's ``torch.get_num_threads()``) in both executors
(:func:`replicate.experiments.executors.run_unit`), and a Ray unit asks for that many CPUs.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from replicate.experiments.executors import UnitTask, make_executor, resources_for

#: Runners rebuilt in this process, by context key (a worker reuses one across its units).
_RUNNERS: dict = {}


def open_store(path: str | Path, config):
    """The finished patch store in folder ``path`` (``patches-<size>-<key>``, written by
    :meth:`replicate.cohort.patches.PatchStore.build` with ``config``), opened without scanning the cohort: the
    memory-mapped patches, the labelled index and the patients table. Raises ReplicateError when the folder is
    not a complete store."""
    import numpy as np
    import pandas as pd

    from replicate.cohort.patches import PatchStore
    from replicate.errors import ReplicateError

    path = Path(path)
    her2 = config.her2_borderline
    index_file, patients_file = path / f"index-her2-{her2}.csv", path / f"patients-her2-{her2}.csv"
    if not (path / "COMPLETE").exists() or not index_file.exists() or not patients_file.exists():
        raise ReplicateError(f"{path}: not a complete patch store (is the run folder on storage this node sees?)")
    meta = json.loads((path / "store.json").read_text())
    patches = np.memmap(path / "patches.f32", dtype=np.float32, mode="r", shape=tuple(meta["shape"]))
    index = pd.read_csv(index_file, dtype={"patient_id": str, "role": str, "kind": str})
    patients = pd.read_csv(patients_file, dtype={"patient_id": str})
    return PatchStore(path, config, meta["key"], patches, index, patients, cohort=None)


def context(runner) -> dict:
    """The picklable description of ``runner`` that :func:`grid_unit` rebuilds it from."""
    return {"preset": runner.p, "stores": {s: (str(st.path), st.config) for s, st in runner.stores.items()},
            "run_dir": str(runner.run_dir), "device": runner.device.type,
            "weights_dir": None if runner.weights_dir is None else str(runner.weights_dir)}


def _ctx_key(ctx: dict) -> str:
    return json.dumps({**ctx, "preset": asdict(ctx["preset"]),
                       "stores": {str(s): p for s, (p, _) in ctx["stores"].items()}}, sort_keys=True, default=repr)


def _runner(ctx: dict):
    key = _ctx_key(ctx)
    if key not in _RUNNERS:
        import torch

        from replicate.experiments.grid import Runner

        stores = {int(s): open_store(p, cfg) for s, (p, cfg) in ctx["stores"].items()}
        wd = Path(ctx["weights_dir"]) if ctx["weights_dir"] is not None else None
        _RUNNERS[key] = Runner(ctx["preset"], stores, Path(ctx["run_dir"]), torch.device(ctx["device"]),
                               weights_dir=wd, progress=False)
    return _RUNNERS[key]


def _features(runner, cell) -> dict:
    """The feature matrix of ``cell.blob`` from ``RUN/features`` (extracted by the driver; extracted here only if
    missing, with the same seed and code as the driver)."""
    from replicate.experiments.features import cached_features
    from replicate.experiments.grid import FEATURE_BATCH, Cell, imagenet_spec, weights_id
    from replicate.experiments.training import NetPair

    spec = imagenet_spec(cell.network, runner.weights_dir, transfer=False)
    store, rows = runner.store(cell.patch_size), runner.rows(cell.patch_size)
    seed = runner.unit_seed(Cell("features", "features", cell.network), 0, 0)
    f = cached_features(runner.cache, lambda: NetPair(spec, FEATURE_BATCH, seed, runner.device), store, rows, spec,
                        [cell.blob], weights_id(spec, seed), batch=FEATURE_BATCH)
    return {"rows": rows, "blobs": f}


def grid_unit(ctx: dict, cell, repeat: int, fold: int) -> dict:
    """One fold of one cell: rebuild the runner from ``ctx`` (once per process), compute the fold with
    :meth:`Runner.run_unit` and return its :meth:`FoldResult.to_json` (``extra["seconds"]``: the unit's wall time).
    Runs in the driver (local executor) or in a Ray worker."""
    runner = _runner(ctx)
    t0 = time.perf_counter()
    f = next(x for x in runner.folds[repeat] if x.fold == fold)
    feats = None
    if cell.approach == "features":
        if getattr(runner, "_dispatch_driver", False):
            # the driver's own runner (local executor): Runner.features as the in-process runner calls it,
            # kept for the consecutive units of the same net and patch size
            memo = getattr(runner, "_dispatch_feats", None)
            if memo is None or memo[0] != (cell.network, cell.patch_size):
                runner._dispatch_feats = memo = ((cell.network, cell.patch_size), runner.features(cell))
            feats = memo[1]
        else:
            feats = _features(runner, cell)
    res = runner.run_unit(cell, f, feats)
    res.extra["seconds"] = time.perf_counter() - t0
    return res.to_json()


def unit_folder(preset, cell) -> str | None:
    """The prototxt folder a unit trains (its GPU share, :func:`resources_for`); None for an SVM unit."""
    from replicate.experiments.plan import cell_folder

    return None if cell.approach == "features" else cell_folder(preset, cell)


def run_grid(runner, executor, todo=None, threads: int | None = None) -> dict:
    """Run ``todo`` (default: every cell of the preset) as executor units; returns ``{cell id: [FoldResult]}`` in
    the order :meth:`Runner.run_all` gives and fills ``runner.timings`` (seconds per cell, summed over its units).

    Finished units (result file present) are read back, not rerun. ``threads``: torch threads per unit (default:
    this process's ``torch.get_num_threads()``; a Ray unit asks for as many CPUs)."""
    import torch

    from replicate.experiments.grid import unique_cells
    from replicate.experiments.protocol import FoldResult

    p = runner.p
    todo = unique_cells(p) if todo is None else todo
    threads = int(threads or torch.get_num_threads())
    ctx = context(runner)
    _RUNNERS[_ctx_key(ctx)] = runner      # the local executor reuses the driver's runner (same numbers either way)
    runner._dispatch_driver = True
    gpu = runner.device.type == "cuda"
    tasks, keys = [], {}
    for cell in todo:
        ks = []
        for r in range(p.n_repeats):
            for fold in runner.folds[r]:
                ks.append(runner.unit_key(cell, r, fold.fold))
                res = dict(resources_for(unit_folder(p, cell), gpu), num_cpus=threads)
                tasks.append(UnitTask(ks[-1], grid_unit, (ctx, cell, r, fold.fold), resources=res, threads=threads))
        keys[cell.id] = ks
        if cell.approach == "features" and not all(runner.state.done(k) for k in ks):
            runner.features(cell)          # on the driver, cached in RUN/features for the SVM units
    out = executor.run(tasks, runner.run_dir, progress=runner.progress, desc=f"{p.name}: folds ({executor.name})")
    runner._dispatch_feats = None
    results = {}
    for cell in todo:
        results[cell.id] = [FoldResult.from_json(out[k]) for k in keys[cell.id]]
        runner.timings[cell.id] = sum(float(r.extra.get("seconds", 0.0)) for r in results[cell.id])
    return results


def start(config, preset):
    """The executor of ``config`` (``executor``, ``ray_address``; ConfigError without ray installed) and, when
    ``config.progress``, the plan's headline on stderr (replicate.experiments.plan, a microbenchmark cached in
    ``$RGR_CACHE_DIR/plan-bench.json``)."""
    ex = make_executor(getattr(config, "executor", "local") or "local", getattr(config, "ray_address", None))
    if config.progress:
        from replicate.experiments.plan import cohort_size, headline, make_plan
        from replicate.experiments.training import resolve_device

        from replicate.errors import ReplicateError

        try:
            cohort = cohort_size(preset, data=config.data, clinical=getattr(config, "clinical", None),
                                 boxes=getattr(config, "boxes", None))
            plan = make_plan(preset, cohort, device=resolve_device(config.device).type, bench_seconds=0.2,
                             beyond_trained=True if getattr(config, "beyond_trained", False) else None)
            print(headline(plan) + f"; executor {ex.name}", file=sys.stderr)
        except ReplicateError:         # bad input: the run itself stops on it with its one-line error
            pass
        except Exception as exc:       # the headline informs; a run never fails over it
            print(f"plan: unavailable ({exc})", file=sys.stderr)
    return ex


def finish(executor) -> None:
    """Shut down a Ray instance this run started (nothing for the local executor)."""
    close = getattr(executor, "close", None)
    if close is not None:
        close()
