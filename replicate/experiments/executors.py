"""Run a list of units locally or on a Ray cluster (issue 11, item 4), with the run folder as the only shared state.

A unit (:class:`UnitTask`) is a pure function of picklable arguments (``fn(*args, **kwargs)``, ``fn`` importable
at module level) whose JSON-able result is written atomically to ``RUN/state/<slug(key)>.json``
(:class:`replicate.experiments.runstate.RunState`, the file the grid runner already writes and resumes from).
Resume = a unit whose result file exists is not run again, by either executor.

- :class:`LocalExecutor`: the units one after another in this process.
- :class:`RayExecutor`: each unit a Ray task (``ray.remote(...).options(num_cpus=..., num_gpus=..., max_retries=...)``;
  Ray: "Fault tolerance -> Tasks": a task whose worker process dies is retried up to ``max_retries`` times), the
  driver waiting with ``ray.wait`` and showing a tqdm bar with an ETA. The run folder must be on storage every
  node sees (NFS, a shared disk). Without an address it starts a local Ray instance (``ray.init()``); with one it
  joins that cluster (``ray.init(address=...)``, e.g. ``auto`` on a node of a cluster started with ``ray start``).

Same seeds, same numbers: every unit runs through :func:`run_unit`, which pins torch's intra-op threads to
``task.threads`` (default 1) in both executors, so a unit's floating-point reduction order does not depend on
where it ran; the unit function seeds itself from its arguments.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from replicate.errors import ConfigError
from replicate.experiments.runstate import RunState

RAY_INSTALL = "pip install 'radiogenomics-replica[ray]'"


@dataclass(frozen=True)
class UnitTask:
    """One unit of work: ``fn(*args, **kwargs)`` -> a JSON-able result stored under ``key``.

    ``resources``: what a Ray task asks for (``{"num_cpus": 1}``; a small net on a GPU: ``{"num_cpus": 1,
    "num_gpus": 0.25}``, packing four on one card). ``threads``: torch intra-op threads while the unit runs."""

    key: str
    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    resources: dict = field(default_factory=lambda: {"num_cpus": 1})
    threads: int = 1


#: Share of one GPU a training unit asks Ray for (``num_gpus``), by prototxt folder: the small nets cannot fill a
#: large card at batch 32 (issue 11: "CIFAR, VGG_R, GoogleNet_R at batch 32 cannot fill an H200 alone"), so four
#: share one; GoogLeNet takes half; VGG16 a whole card. Other folders: half.
GPU_SHARE = {"cifar": 0.25, "vgg_r_table2": 0.25, "googlenet_r_table2": 0.25, "vgg_r": 0.5, "googlenet_r": 0.25,
             "googlenet": 0.5, "googlenet_transfer": 0.5, "googlenet_imagenet": 0.5, "vgg16": 1.0,
             "vgg16_imagenet": 1.0}


def resources_for(folder: str | None, gpu: bool) -> dict:
    """Ray resources of a unit: one CPU, plus :data:`GPU_SHARE` of a GPU for a net on a GPU cluster (``folder``
    None: an SVM fit, CPU only)."""
    if not gpu or folder is None:
        return {"num_cpus": 1}
    return {"num_cpus": 1, "num_gpus": GPU_SHARE.get(folder, 0.5)}


def run_unit(task: UnitTask, run_dir: str) -> Any:
    """Run one unit with pinned threads and store its result atomically in ``run_dir``; returns the result.
    The same function runs in both executors (in a Ray worker process for :class:`RayExecutor`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(task.threads)))
    try:
        value = task.fn(*task.args, **task.kwargs)
    finally:
        torch.set_num_threads(before)
    RunState(run_dir).save(task.key, value)
    return value


def _todo(tasks: list[UnitTask], run_dir) -> tuple[dict, list[UnitTask]]:
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"unit key {dup!r} appears twice in one run")
    state = RunState(run_dir)
    done = {t.key: state.load(t.key) for t in tasks if state.done(t.key)}
    return done, [t for t in tasks if t.key not in done]


def _bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="unit", smoothing=0.1)


class LocalExecutor:
    """The units one after another in this process."""

    name = "local"

    def run(self, tasks: list[UnitTask], run_dir, progress: bool = True, desc: str = "units") -> dict[str, Any]:
        """Results by key, in ``tasks`` order; finished units (result file present) are read back, not rerun."""
        done, todo = _todo(tasks, run_dir)
        bar = _bar(len(tasks), len(done), desc, progress)
        for t in todo:
            done[t.key] = run_unit(t, str(run_dir))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return {t.key: done[t.key] for t in tasks}


def import_ray():
    """``ray``, or ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray: the ray package is not installed ({RAY_INSTALL})") from None
    return ray


class RayExecutor:
    """Each unit a Ray task; retried when its worker dies; resumable like :class:`LocalExecutor`.

    ``address``: a running cluster (``ray.init(address=...)``); None starts a local instance (with ``num_cpus`` /
    ``num_gpus`` when given), which :meth:`close` shuts down again. ``max_retries``: reruns of a unit whose worker
    process died (Ray's task retry; a unit that raises is not retried: its error is the driver's error)."""

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3, num_cpus: int | None = None,
                 num_gpus: float | None = None, poll_s: float = 1.0):
        self.ray = import_ray()
        self.address, self.max_retries, self.poll_s = address, max_retries, poll_s
        self._started = False
        if not self.ray.is_initialized():
            import os
            from pathlib import Path

            repo = str(Path(__file__).resolve().parents[2])   # workers import this checkout's replicate/models
            path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
            kw = {"log_to_driver": False, "include_dashboard": False,
                  "runtime_env": {"env_vars": {"PYTHONPATH": path}}}
            if address is None:
                if num_cpus is not None:
                    kw["num_cpus"] = num_cpus
                if num_gpus is not None:
                    kw["num_gpus"] = num_gpus
            self.ray.init(address=address, **kw)
            self._started = True
        self._remote = self.ray.remote(run_unit)

    def run(self, tasks: list[UnitTask], run_dir, progress: bool = True, desc: str = "units",
            timeout_s: float | None = None) -> dict[str, Any]:
        """Results by key, in ``tasks`` order. Units already stored are read back; the rest are submitted at once
        and Ray schedules them on the resources they ask for. ``timeout_s``: give up (cancel what is pending,
        ReplicateError) after that many seconds; finished units stay stored."""
        from replicate.errors import ReplicateError

        t0 = time.perf_counter()
        done, todo = _todo(tasks, run_dir)
        bar = _bar(len(tasks), len(done), desc, progress)
        refs = {}
        for t in todo:
            opts = {"max_retries": self.max_retries, "retry_exceptions": False}
            opts.update(t.resources)
            refs[self._remote.options(**opts).remote(t, str(run_dir))] = t.key
        pending = list(refs)
        try:
            while pending:
                if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                    raise ReplicateError(f"ray executor: {len(pending)} units still pending after {timeout_s:g} s")
                ready, pending = self.ray.wait(pending, num_returns=1, timeout=self.poll_s)
                for r in ready:
                    done[refs[r]] = self.ray.get(r)
                    if bar is not None:
                        bar.update(1)
        except BaseException:
            for r in pending:
                self.ray.cancel(r, force=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        return {t.key: done[t.key] for t in tasks}

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


def make_executor(name: str = "local", ray_address: str | None = None, **ray_kw):
    """``local`` or ``ray`` (``--executor``); ConfigError for anything else or for ray without the package."""
    if name == "local":
        if ray_address:
            raise ConfigError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=ray_address, **ray_kw)
    raise ConfigError(f"--executor {name!r}: expected local or ray")


def demo_unit(seed: int, steps: int = 20, size: int = 64, die_once: str | None = None) -> dict:
    """A small deterministic CPU unit for tests and benchmarks/ray_scaling.py: ``steps`` of SGD on a seeded
    (size x size) least-squares problem; returns the final loss and weight sum (floats, bit-reproducible for a
    given thread count). ``die_once``: a path; if it does not exist the function creates it and kills its own
    process (a worker's death), so the first attempt dies and the retry succeeds."""
    import os

    import torch

    if die_once is not None and not os.path.exists(die_once):
        open(die_once, "w").close()
        os._exit(1)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size * 4, size, generator=g)
    y = torch.randn(size * 4, 1, generator=g)
    w = torch.zeros(size, 1, requires_grad=True)
    loss = None
    for _ in range(steps):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.01 * w.grad
            w.grad = None
    return {"seed": seed, "loss": float(loss.detach()), "w_sum": float(w.detach().sum())}


def wall(fn, *args, **kwargs) -> tuple[Any, float]:
    """(result, seconds) of one call (benchmarks)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
