"""The experiment runner, resumability, the report and the `pytest compare/ --run` checks, end to end on small
inputs (the full smoke preset is the README's job, timed separately: see the report of `python -m replicate run`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from compare import paper
from replicate.experiments import grid as ex
from replicate.experiments import protocol, report
from replicate.experiments.protocol import FoldResult
from replicate.experiments.runstate import RunState

N_PATIENTS, SEED = 33, 0


@pytest.fixture(scope="module")
def stores(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # reuse across sessions when pytest's cache is on
    name = f"synth-effect0-{N_PATIENTS}-{SEED}"
    root = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)  # shared with test_validity
    return ex.synthetic_stores(root, N_PATIENTS, SEED, effect=0.0, sizes=[80])


def test_runstate_is_atomic_and_computes_once(tmp_path):
    st = RunState(tmp_path)
    calls = []
    assert st.get_or_compute("a|b", lambda: calls.append(1) or {"x": 1.5}) == {"x": 1.5}
    assert RunState(tmp_path).get_or_compute("a|b", lambda: calls.append(1) or {"x": 2}) == {"x": 1.5}
    assert calls == [1]
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]


def test_runner_resumes_without_recomputing_finished_folds(stores, tmp_path, monkeypatch):
    p = dataclasses.replace(ex.get_preset("smoke"), n_boot=200)
    cell = next(c for c in ex.unique_cells(p) if c.id.startswith("scratch/CIFAR/"))
    calls = []
    real = ex.Runner.run_unit

    def counting(self, c, fold, feats):
        if len(calls) == 4 and not getattr(self, "_resumed", False):
            raise KeyboardInterrupt  # killed mid-run
        calls.append((fold.repeat, fold.fold))
        return real(self, c, fold, feats)

    monkeypatch.setattr(ex.Runner, "run_unit", counting)
    r1 = ex.Runner(p, stores, tmp_path, torch.device("cpu"), progress=False)
    with pytest.raises(KeyboardInterrupt):
        r1.run_all([cell])
    first = [FoldResult.from_json(RunState(tmp_path).load(r1.unit_key(cell, 0, k))) for k in range(4)]
    r2 = ex.Runner(p, stores, tmp_path, torch.device("cpu"), progress=False)
    r2._resumed = True
    out = r2.run_all([cell])[cell.id]
    assert calls == [(0, k) for k in range(10)]  # folds 0-3 once, then only 4-9
    assert [o.test_scores for o in out[:4]] == [f.test_scores for f in first]
    s = protocol.summarise(out, n_boot=200)
    assert 0.0 <= s.ci_low <= s.test_auc <= s.ci_high <= 1.0
    curves = out[0].extra["curves"]
    assert len(curves["train_auc"]) == p.scratch_epochs and np.isfinite(curves["loss"]).all()


def test_smoke_preset_documents_every_departure():
    diffs = "\n".join(ex.get_preset("smoke").differences())
    for key in ("n_repeats", "scratch_epochs", "transfer_epochs", "max_iters_per_epoch",
                "max_score_patches_per_patient", "max_train_auc_patients"):
        assert key in diffs
    assert ex.get_preset("paper").differences() == []


def test_select_rows_keeps_roles_and_caps(stores):
    idx = stores[80].index
    rows = ex.select_rows(idx, 2, 1)
    sub = idx.iloc[rows]
    counts = sub.groupby(["patient_id", "role"]).size().unstack()
    assert (counts["train"] == 2).all() and (counts["test"] == 1).all()
    assert set(sub[sub.role == "train"].kind) == {"centre"}


def _fake_run(run_dir: Path, pts: pd.DataFrame, rng) -> tuple:
    """Every cell of the smoke preset filled with random out-of-fold scores under the real fold structure."""
    p = dataclasses.replace(ex.get_preset("smoke"), n_repeats=2, n_boot=200)
    labels = dict(zip(pts.patient_id, pts.label))
    results = {}
    for cell in ex.unique_cells(p):
        rs = []
        for r in range(p.n_repeats):
            for f in protocol.patient_folds(pts, p.n_folds, seed=protocol.repeat_seed(p.seed, r), repeat=r):
                curves = {"epoch": [1, 2], "train_auc": [0.6, 0.7], "test_auc": [0.5, 0.55], "loss": [0.7, 0.6],
                          "lr": [1e-4, 1e-4]}
                rs.append(FoldResult(r, f.fold, list(f.test_ids), [labels[i] for i in f.test_ids],
                                     list(rng.normal(size=len(f.test_ids))), 0.8, {"curves": curves}))
        results[cell.id] = rs
    summ = ex.summaries(p, results)
    flags = {c.id: ex.NO_WEIGHTS_FLAG for c in ex.unique_cells(p) if c.approach != "scratch"}
    prov = {"preset": p.name, "code_version": "test", "device": "cpu", "seed": p.seed, "n_folds": p.n_folds,
            "n_repeats": p.n_repeats, "n_boot": p.n_boot, "cohort": {"flow": ["found: 33"]},
            "weights": [{"network": n, "file": None, "sha1": None, "status": ex.NO_WEIGHTS_FLAG}
                        for n in ex.IMAGENET_NETS],
            "no_pretrained_weights": ex.NO_WEIGHTS_FLAG, "differences": p.differences(), "timings": {}}
    report.write_all(run_dir, p, ex.cells(p), results, summ, flags, prov)
    return p, results


def test_report_and_compare_checks_on_a_complete_run(stores, tmp_path):
    pts = ex.patients_table(stores[80].index)
    p, _ = _fake_run(tmp_path, pts, np.random.default_rng(0))
    for name in paper.RESULT_TABLES:
        t = paper.check_table_cells(tmp_path, name)
        assert len(t) == len(paper.load(name))
    paper.check_folds(tmp_path, p.n_folds, p.n_repeats)
    t5 = pd.read_csv(tmp_path / "results" / "table5.csv")
    assert (t5.note == ex.NO_WEIGHTS_FLAG).all() and list(t5.paper_test_auc) == list(paper.load("table5").test_auc)
    for png in ("figure2", "figure3", "roc_table3", "roc_table4", "roc_table5"):
        assert (tmp_path / "figures" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    cmp = report.insert_comparison(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert text.count("## Comparison with the paper") == 1 and ex.NO_WEIGHTS_FLAG in text
    assert "expected_inconsistent(0)" in text and not cmp.comparable.any()
    report.insert_comparison(tmp_path)  # idempotent
    assert (tmp_path / "report.md").read_text().count("## Comparison with the paper") == 1
    assert len(cmp) == sum(len(paper.load(n)) for n in paper.RESULT_TABLES)


def test_compare_checks_fail_on_protocol_defects(stores, tmp_path):
    pts = ex.patients_table(stores[80].index)
    p, _ = _fake_run(tmp_path, pts, np.random.default_rng(1))
    folds = tmp_path / "results" / "folds.csv"
    good = pd.read_csv(folds)
    good.drop(index=3).to_csv(folds, index=False)          # a missing fold
    with pytest.raises(paper.RunDefect, match="folds"):
        paper.check_folds(tmp_path, p.n_folds, p.n_repeats)
    bad = good.copy()                                        # a patient tested twice in one repeat
    bad.loc[1, "test_ids"] = bad.loc[0, "test_ids"]
    bad.to_csv(folds, index=False)
    with pytest.raises(paper.RunDefect, match="tested in two folds"):
        paper.check_folds(tmp_path, p.n_folds, p.n_repeats)
    t3 = tmp_path / "results" / "table3.csv"
    t = pd.read_csv(t3)
    t.loc[2, "ours_test_auc"] = np.nan                       # NaN / absent cell
    t.to_csv(t3, index=False)
    with pytest.raises(paper.RunDefect, match="NaN"):
        paper.check_table_cells(tmp_path, "table3")
    t.drop(index=2).to_csv(t3, index=False)                  # a row missing
    with pytest.raises(paper.RunDefect, match="rows"):
        paper.check_table_cells(tmp_path, "table3")


def test_transfer_net_takes_imagenet_weights_except_the_new_2way_layers(tmp_path):
    """A caffemodel written by our writer from the 1000-way ImageNet GoogLeNet stands in for BVLC's file: the
    fine-tuning net copies every layer by name except the renamed 2-way classifiers (Caffe's convention)."""
    import models
    from replicate.experiments.training import NetPair

    src = models.to_torch(models.load_net(ex.PROTOTXT / "googlenet_imagenet" / "deploy.prototxt", batch=1), seed=5)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    models.save_caffemodel(src, wdir / "bvlc_googlenet.caffemodel")
    spec = ex.imagenet_spec("GoogleNet", wdir, transfer=True)
    assert spec.resize == 256 and spec.input_size == 224 and spec.style == "imagenet"
    pair = NetPair(spec, batch=2, seed=9, device=torch.device("cpu"), new_lr_mult=50.0)
    got = pair.test_module.caffe_params()
    want = src.caffe_params()
    assert torch.equal(got["conv1/7x7_s2"][0], want["conv1/7x7_s2"][0])
    assert torch.equal(got["inception_5b/1x1"][0], want["inception_5b/1x1"][0])
    assert "loss3/classifier_2way" in pair.weights_report["missing"]
    assert "loss3/classifier" in pair.weights_report["ignored"]
    # the swept rate: lr_mult of the new layers set to last_lr / base_lr, the rest untouched
    groups = {g["name"]: g["lr_mult"] for g in pair.train_module.param_groups()}
    assert groups["loss3/classifier_2way[0]"] == 50.0 and groups["loss3/classifier_2way[1]"] == 100.0
    assert groups["conv1/7x7_s2[0]"] == 1.0
    # train and test modules share parameters (Caffe's train/test net sharing)
    assert pair.train_module.caffe_params()["conv1/7x7_s2"][0] is got["conv1/7x7_s2"][0]
    assert ex.weights_id(spec) == __import__("models.fetch").fetch.sha1_of(wdir / "bvlc_googlenet.caffemodel")


def test_features_are_extracted_once_per_blob_and_pooled_over_xy(stores, tmp_path):
    from replicate.experiments.features import FeatureCache, cached_features
    from replicate.experiments.training import NetPair, NetSpec

    deploy = ex.PROTOTXT / "cifar" / "deploy.prototxt"
    spec = NetSpec("CIFAR", deploy, input_size=80, style="scratch")
    built = []

    def make_pair():
        built.append(1)
        return NetPair(spec, 8, 3, torch.device("cpu"))

    store = stores[80]
    rows = ex.select_rows(store.index, 1, 1)[:20]
    cache = FeatureCache(tmp_path)
    a = cached_features(cache, make_pair, store, rows, spec, ["pool3", "ip1"], "random-init-seed3", batch=8)
    assert len(built) == 1 and a["pool3"].shape == (20, 64) and a["ip1"].shape == (20, 2)
    b = cached_features(cache, make_pair, store, rows, spec, ["ip1", "pool3"], "random-init-seed3", batch=8)
    assert len(built) == 1 and np.array_equal(a["pool3"], b["pool3"])
    c = cached_features(cache, make_pair, store, rows, spec, ["pool3", "conv3"], "random-init-seed3", batch=8)
    assert len(built) == 2 and c["conv3"].shape == (20, 64)
    # x-y average of the raw blob
    pair = make_pair()
    from replicate.experiments.training import prepare
    raw = pair.blobs(prepare(np.asarray(store.patches[rows[:3]]), spec, None), ["pool3"])["pool3"]
    np.testing.assert_allclose(a["pool3"][:3], raw.detach().mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
