"""replicate.experiments.executors (issue 11, item 4): the local executor resumes from the run folder; a Ray
cluster of two nodes on loopback, started inside the test, gives the same results as the local executor and
survives a worker's death. Skipped where ray is not importable."""
import json

import pytest

from replicate.errors import ConfigError
from replicate.experiments.executors import LocalExecutor, UnitTask, demo_unit, make_executor
from replicate.experiments.runstate import RunState


def _tasks(n=4, **kw):
    return [UnitTask(f"demo|seed={s}", demo_unit, (s,), dict(kw)) for s in range(n)]


def test_local_executor_writes_and_resumes(tmp_path):
    res = LocalExecutor().run(_tasks(3), tmp_path, progress=False)
    assert [r["seed"] for r in res.values()] == [0, 1, 2]
    st = RunState(tmp_path)
    assert all(st.done(k) for k in res)
    # resume: a stored result is read back, not recomputed (tamper with it to prove it)
    path = st.path("demo|seed=1")
    obj = json.loads(path.read_text())
    obj["value"]["loss"] = -1.0
    path.write_text(json.dumps(obj))
    again = LocalExecutor().run(_tasks(3), tmp_path, progress=False)
    assert again["demo|seed=1"]["loss"] == -1.0 and again["demo|seed=2"] == res["demo|seed=2"]


def test_resources_pack_small_nets_on_a_gpu():
    from replicate.experiments.executors import resources_for

    assert resources_for("cifar", gpu=True) == {"num_cpus": 1, "num_gpus": 0.25}
    assert resources_for("vgg16", gpu=True)["num_gpus"] == 1.0
    assert resources_for("cifar", gpu=False) == {"num_cpus": 1}
    assert resources_for(None, gpu=True) == {"num_cpus": 1}


def test_make_executor_errors():
    with pytest.raises(ConfigError, match="local or ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor("local", ray_address="auto")


def test_ray_missing_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)     # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'radiogenomics-replica\[ray\]'"):
        make_executor("ray")


def test_ray_two_node_cluster_matches_local(tmp_path, monkeypatch):
    # loopback only: without this Ray maps 127.0.0.1 to the host's first interface address when connecting
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False, raising=False)
    from ray.cluster_utils import Cluster

    from replicate.experiments.executors import RayExecutor

    local = LocalExecutor().run(_tasks(4), tmp_path / "local", progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ex = RayExecutor(address=cluster.address, max_retries=2)
        try:
            assert len(ray.nodes()) == 2
            tasks = _tasks(4)
            marker = tmp_path / "died"
            tasks[0] = UnitTask(tasks[0].key, demo_unit, (0,), {"die_once": str(marker)})
            got = ex.run(tasks, tmp_path / "ray", progress=False, timeout_s=120)
        finally:
            ex.close()
            ray.shutdown()
    finally:
        cluster.shutdown()
    assert marker.exists()             # the first attempt of unit 0 killed its worker; Ray reran it
    assert got == local                # same seeds, same threads: the same floats
    assert all(RunState(tmp_path / "ray").done(k) for k in got)


# ------------------------------------------------------------------------------------------ the grid on executors
N_PATIENTS, SEED = 33, 0


@pytest.fixture(scope="module")
def grid_stores(request, tmp_path_factory):
    """The synthetic cohort and 80 px store of tests/test_experiments_smoke.py (pytest's cache when on)."""
    from pathlib import Path

    from replicate.experiments import grid as ex

    cache = getattr(request.config, "cache", None)
    name = f"synth-effect0-{N_PATIENTS}-{SEED}"
    root = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
    return ex.synthetic_stores(root, N_PATIENTS, SEED, effect=0.0, sizes=[80])


def _tiny_grid(grid_stores, run_dir, executor):
    """Two cells of the smoke preset (a CIFAR training cell, GoogLeNet features + poly SVM at patch 80) with 3
    folds, one torch thread per unit; returns results/summary.json's content for them (grid.summaries)."""
    import dataclasses

    import torch

    from replicate.experiments import dispatch
    from replicate.experiments import grid as ex

    p = dataclasses.replace(ex.get_preset("smoke"), n_boot=100, n_folds=3)
    todo = [next(c for c in ex.unique_cells(p) if c.id.startswith("scratch/CIFAR/")),
            next(c for c in ex.unique_cells(p) if c.table == "table5" and c.patch_size == 80)]
    runner = ex.Runner(p, grid_stores, run_dir, torch.device("cpu"), progress=False)
    results = dispatch.run_grid(runner, executor, todo=todo, threads=1)
    assert set(runner.timings) == {c.id for c in todo}
    return ex.summaries(p, results), results


def test_open_store_reads_back_what_build_made(grid_stores):
    from replicate.experiments.dispatch import open_store

    st = grid_stores[80]
    again = open_store(st.path, st.config)
    assert again.key == st.key and again.index.equals(st.index)
    assert (again.patches[:5] == st.patches[:5]).all()


def test_grid_on_ray_two_workers_matches_local(grid_stores, tmp_path, monkeypatch):
    """`--executor ray` on a two-node loopback cluster gives the local executor's summary AUCs, bit for bit, and a
    Ray run resumes from its own files (nothing recomputed)."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_worker_niceness", "0")   # Ray's default nice 15 starves the workers on a busy CI host
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from replicate.experiments import dispatch
    from replicate.experiments.executors import RayExecutor

    local_summ, local_res = _tiny_grid(grid_stores, tmp_path / "local", LocalExecutor())
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ex = RayExecutor(address=cluster.address, max_retries=1)
        try:
            assert len(ray.nodes()) == 2
            ray_summ, ray_res = _tiny_grid(grid_stores, tmp_path / "ray", ex)
            n_done = len(list((tmp_path / "ray" / "state").iterdir()))
            # resume: a second ray run over the same folder reads every unit back
            dispatch._RUNNERS.clear()
            again, _ = _tiny_grid(grid_stores, tmp_path / "ray", ex)
        finally:
            dispatch.finish(ex)
            ray.shutdown()
    finally:
        cluster.shutdown()
    assert n_done == 6
    assert ray_summ == local_summ          # AUCs, CIs, per-repeat AUCs: equal floats
    for cid in local_summ:
        assert [f.test_scores for f in ray_res[cid]] == [f.test_scores for f in local_res[cid]]
    assert again == ray_summ


def test_run_executor_ray_without_ray_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    import sys

    from replicate.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["run", "--executor", "ray", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'radiogenomics-replica[ray]'" in err[0]
    assert not (tmp_path / "run").exists()      # refused before anything was written
