"""What a run adds for the paper-parity verdict (issue 10, phase 2): the controls (a planted-effect cohort and a
null cohort, ``effect = 0``, inside the same run), every CI reading per cell, the out-of-fold predictions, the
cohort's label summary and the ``--paper-sized`` subsets. Nothing here reads the paper's numbers (the report and
``compare/`` put them beside ours).

Files written under the run folder (atomically):

- ``results/predictions.csv``: ``patient, cell, repeat, fold, score, label`` for every test patient of every fold
  (replicate.experiments.paired.predictions_frame), so any statistic can be recomputed outside the harness.
- ``results/ci_methods.csv``: per cell the patient bootstrap (primary), the fold-AUC bootstrap and the spread over
  repeats (replicate.experiments.protocol.ci_methods).
- ``results/control_rule.json`` (presets with ``controls``, synthetic cohort only), written before the grid runs:
  which routes each control requires, from the budget (replicate.experiments.controls.required_routes).
- ``results/controls.json`` (presets with ``controls``, synthetic cohort only): the cohort sizing
  (replicate.experiments.power.control_sizing), each control cell's AUC and CI on the planted cohort and on the
  null cohort, Holm-corrected (replicate.experiments.controls), and whether each control passes.
- ``results/cohort_labels.json``, ``results/cohort_subtypes.csv``, ``results/cohort_flow.csv``: the loader's label
  summary (prevalence, agreement with ``Mol Subtype``, HER2-borderline count), the cross-tab and our flow.
- ``results/paper_sized.csv`` (``--paper-sized R``): each deep-feature cell's AUC on each of R stratified subsets
  (replicate.cohort.flow.paper_sized_subsets), and its spread.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from replicate.experiments.runstate import atomic_write_json, atomic_write_text


def _csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


def ci_methods_frame(preset, results: dict) -> pd.DataFrame:
    """One row per cell: ``cell, test_auc, patient_ci_low, patient_ci_high, fold_ci_low, fold_ci_high,
    n_repeats, repeat_min, repeat_median, repeat_max`` (AUC units)."""
    from replicate.experiments.protocol import ci_methods

    rows = []
    for cid, rs in sorted(results.items()):
        m = ci_methods(rs, n_folds=preset.n_folds, n_boot=preset.n_boot, seed=preset.seed)
        rows.append({"cell": cid, "test_auc": m["test_auc"],
                     "patient_ci_low": m["patient_bootstrap"][0], "patient_ci_high": m["patient_bootstrap"][1],
                     "fold_ci_low": m["fold_bootstrap"][0], "fold_ci_high": m["fold_bootstrap"][1],
                     "n_repeats": m["repeats"]["n_repeats"], "repeat_min": m["repeats"]["min"],
                     "repeat_median": m["repeats"]["median"], "repeat_max": m["repeats"]["max"]})
    return pd.DataFrame(rows)


def write_predictions(run_dir: Path, preset, results: dict) -> None:
    """``results/predictions.csv`` and ``results/ci_methods.csv`` of every run (called by report.write_all)."""
    from replicate.experiments.paired import predictions_frame

    res = Path(run_dir) / "results"
    _csv(res / "predictions.csv", predictions_frame(results))
    _csv(res / "ci_methods.csv", ci_methods_frame(preset, results))


def trained_steps(runner, cell) -> float:
    """SGD steps a fold the run gives a trained cell: epochs x iterations per epoch (ceil of the fold's training
    patches / batch, capped by ``max_iters_per_epoch``; replicate.experiments.training), median over the folds of
    the first repeat. Read from the patch store before anything is trained."""
    import math

    import numpy as np

    from replicate.experiments import grid as ex
    from replicate.experiments.training import fold_data

    p = runner.p
    spec = ex.scratch_spec(cell.network, p.scratch_variant)
    epochs = p.epochs_by_input.get(spec.input_size, p.scratch_epochs)
    batch = ex.batch_size(p, spec)
    cap = p.max_iters_per_epoch.get(spec.input_size)
    store = runner.store(cell.patch_size)
    steps = []
    for fold in runner.folds[0]:
        n = len(fold_data(store.index, fold, runner.cell_rows(cell)).train_rows)
        it = math.ceil(n / batch)
        steps.append(epochs * (min(it, cap) if cap else it))
    return float(np.median(steps))


def control_rule(preset, runner, device) -> dict:
    """Which routes the controls require (replicate.experiments.controls.required_routes), from the run's budget:
    each trained control's SGD steps a fold (:func:`trained_steps`) against the paper's (its solver.prototxt's
    max_iter, 40 epochs of the paper's 40,194 training patches at batch 32). Computed before the grid runs."""
    from replicate.experiments import controls
    from replicate.experiments import grid as ex

    spec = preset.controls
    by_id = {c.id: c for c in ex.unique_cells(preset)}
    steps, paper = {}, {}
    for cid in spec.get("trained", []):
        cell = by_id[cid]
        steps[cid] = trained_steps(runner, cell)
        paper[cid] = float(ex.solver_param(ex.SCRATCH_NETS[preset.scratch_variant][cell.network], "max_iter"))
    return controls.required_routes(spec, steps, paper, device=getattr(device, "type", str(device)))


def write_control_rule(run_dir: Path, rule: dict) -> Path:
    """``results/control_rule.json``: the controls' rule and required routes, written before the grid runs."""
    path = Path(run_dir) / "results" / "control_rule.json"
    atomic_write_json(path, rule)
    return path


def handcrafted_rows(runner, spec: dict, path: Path, progress: bool) -> dict:
    """The hand-crafted control routes (``spec["handcrafted"]``: (baseline, classifier) pairs) on ``runner``'s
    cohort: route id -> (test AUC, (95% CI)) under the protocol and its primary CI
    (replicate.experiments.baselines.evaluate_baselines -> protocol.summarise); the features are written to
    ``path``."""
    from replicate.experiments import controls
    from replicate.experiments.baselines import evaluate_baselines
    from replicate.experiments.beyond import handcrafted_features

    p = runner.p
    hc = handcrafted_features(runner, path, progress)
    out = {}
    for b, k in spec.get("handcrafted", controls.HANDCRAFTED_ROUTES):
        r = evaluate_baselines(hc, baselines=(b,), classifiers=(k,), n_folds=p.n_folds, n_repeats=p.n_repeats,
                               seed=p.seed, n_boot=p.n_boot).iloc[0]
        out[controls.handcrafted_route(b, k)] = (float(r.test_auc), (float(r.ci_low), float(r.ci_high)))
    return out


def run_controls(config, preset, run_dir: Path, device, weights_dir, summ: dict, stores: dict,
                 results: dict | None = None, patients: pd.DataFrame | None = None, runner=None,
                 rule: dict | None = None) -> dict:
    """The positive control (this run's planted cohort) and the negative control (a second synthetic cohort with
    ``preset.controls["null_effect"]``, written to ``run_dir/null``, same size and seed, same routes), by the rule
    ``rule`` (:func:`control_rule`, fixed before the grid ran; recomputed from ``runner`` when None): the positive
    control Holm-corrected across its required routes, the negative across every route
    (replicate.experiments.controls). Routes: the control grid cells and the hand-crafted baselines
    (:func:`handcrafted_rows`, on both cohorts). Returns plain data for ``results/controls.json``."""
    from replicate.cohort.synth import SynthConfig, generate
    from replicate.experiments import controls, power
    from replicate.experiments import grid as ex
    from replicate.experiments.pipeline import _stores

    spec = preset.controls
    ids = controls.control_cells(spec)
    if rule is None:
        rule = control_rule(preset, runner, device)
    n = int(preset.synth.get("n_patients", 270))
    seed = int(preset.synth.get("seed", 0))
    null_effect = float(spec.get("null_effect", 0.0))
    null_dir = run_dir / "null"
    cohort = null_dir / "cohort"
    if not (cohort / "synthetic_truth.csv").exists():
        if config.progress:
            print(f"negative control: a synthetic cohort of {n} patients with effect {null_effect} in {cohort}",
                  file=sys.stderr)
        generate(cohort, SynthConfig(patients=n, seed=seed, effect=null_effect), overwrite=True,
                 progress=config.progress)
    null_stores = _stores(cohort, sorted(stores), null_dir / "patches", config.progress, preset.test_patches)
    null_runner = ex.Runner(replace(preset, name=preset.name + "-null"), null_stores, null_dir, device,
                            weights_dir=weights_dir, progress=config.progress)
    todo = [c for c in ex.unique_cells(preset) if c.id in ids]
    null_results = null_runner.run_all(todo)
    null_summ = ex.summaries(preset, null_results)

    def diagnose(res: dict | None, pts: pd.DataFrame | None) -> dict:
        if not res or pts is None or not len(pts):
            return {}
        q = float(pts["label"].mean())
        out = {}
        for c in ids:
            d = controls.training_diagnostic(res.get(c, []), q) if 0 < q < 1 else None
            if d is not None:
                out[c] = d
        return out

    def routes(s, hand):
        cells = {c: (s[c]["test_auc"], (s[c]["ci_low"], s[c]["ci_high"])) for c in ids if c in s}
        cells.update(hand)
        return {c: cells[c] for c in rule["negative"] if c in cells}

    res_dir = run_dir / "results"
    pos = routes(summ, handcrafted_rows(runner, spec, res_dir / "controls_handcrafted_features.csv",
                                        config.progress))
    neg = routes(null_summ, handcrafted_rows(null_runner, spec, null_dir / "results" / "handcrafted_features.csv",
                                             config.progress))
    req = [c for c in rule["positive_required"] if c in pos]
    pos_rows = controls.check_routes(pos, req)
    neg_rows = controls.check_routes(neg, list(neg))
    for r in pos_rows + neg_rows:
        r["route"] = rule["routes"].get(r["cell"], "")
    pos_ok, pos_why = controls.positive_control_passes(pos_rows, list(rule["positive_required"]), [])
    neg_ok, neg_why = controls.negative_control_passes(neg_rows)
    return {
        "effect": float(config.synth_effect), "null_effect": null_effect, "n_patients": n, "seed": seed,
        "rule": rule, "required": list(rule["positive_required"]), "reported": list(rule["positive_reported"]),
        "sizing": power.control_sizing(config.synth_effect, n_patients=n),
        "ideal_auc": power.ideal_auc(config.synth_effect),
        "positive": {"rows": pos_rows, "passed": pos_ok, "why": pos_why,
                     "training": diagnose(results, patients)},
        "negative": {"rows": neg_rows, "passed": neg_ok, "why": neg_why,
                     "training": diagnose(null_results, null_runner.patients)},
        "alpha_one_sided": controls.ALPHA, "method": controls.__doc__.strip().splitlines()[0],
        "timings": null_runner.timings,
    }


def paper_sized(config, preset, run_dir: Path, device, weights_dir, main_runner, stores: dict) -> pd.DataFrame:
    """Each deep-feature cell's protocol summary on ``config.paper_sized`` stratified subsets of
    ``config.paper_sized_n`` = (patients, luminal A) of the run's cohort. Only the deep-feature cells are rerun
    (features are cached; an SVM fit per fold is cheap): retraining nets R times is out of reach on CPU."""
    from replicate.cohort.flow import paper_sized_subsets
    from replicate.experiments import grid as ex
    from replicate.experiments.protocol import patient_folds, repeat_seed

    n, n_pos = (int(v) for v in config.paper_sized_n)
    subsets = paper_sized_subsets(main_runner.patients, n=n, n_pos=n_pos, draws=int(config.paper_sized),
                                  seed=preset.seed)
    todo = [c for c in ex.unique_cells(preset) if c.approach == "features"]
    rows = []
    for k, ids in enumerate(subsets):
        r = ex.Runner(preset, stores, run_dir / "paper_sized" / f"draw{k}", device, weights_dir=weights_dir,
                      progress=False)
        r.cache = main_runner.cache
        r.patients = main_runner.patients[main_runner.patients.patient_id.isin(set(ids))].reset_index(drop=True)
        r.folds = {rep: patient_folds(r.patients, preset.n_folds, seed=repeat_seed(preset.seed, rep), repeat=rep)
                   for rep in range(preset.n_repeats)}
        for cid, s in ex.summaries(preset, r.run_all(todo)).items():
            rows.append({"draw": k, "cell": cid, "n_patients": n, "n_luminal_a": n_pos, "test_auc": s["test_auc"],
                         "ci_low": s["ci_low"], "ci_high": s["ci_high"]})
    return pd.DataFrame(rows, columns=["draw", "cell", "n_patients", "n_luminal_a", "test_auc", "ci_low", "ci_high"])


def extras(config, preset, run_dir: Path, device, weights_dir, runner, results: dict, summ: dict,
           stores: dict) -> dict:
    """Everything this module computes for a finished grid (plain data; written by :func:`finish`)."""
    out = {}
    if preset.controls and config.data is None:
        rule_file = Path(run_dir) / "results" / "control_rule.json"
        rule = json.loads(rule_file.read_text()) if rule_file.exists() else None
        out["controls"] = run_controls(config, preset, Path(run_dir), device, weights_dir, summ, stores,
                                       results=results, patients=runner.patients, runner=runner, rule=rule)
    if config.paper_sized:
        out["paper_sized"] = paper_sized(config, preset, Path(run_dir), device, weights_dir, runner, stores)
    cohort = stores[sorted(stores)[0]].cohort
    if cohort is not None:
        try:
            out["cohort_labels"] = cohort.label_summary()
            out["cohort_subtypes"] = cohort.subtype_crosstab("labelled").reset_index()
            out["cohort_flow"] = cohort.flow()
        except Exception as exc:  # informative only: a synthetic cohort may lack the columns
            out["cohort_labels"] = {"unavailable": str(exc)}
    return out


def finish(run_dir: Path, ex: dict) -> None:
    """Write :func:`extras`' files, then the report's verdict sections and ``results/comparison.csv``
    (replicate.experiments.report.insert_sections)."""
    res = Path(run_dir) / "results"
    if "controls" in ex:
        atomic_write_json(res / "controls.json", ex["controls"])
    if "paper_sized" in ex:
        _csv(res / "paper_sized.csv", ex["paper_sized"])
    if "cohort_labels" in ex:
        atomic_write_text(res / "cohort_labels.json", json.dumps(ex["cohort_labels"], indent=1, default=str))
    for k in ("cohort_subtypes", "cohort_flow"):
        if k in ex:
            _csv(res / f"{k}.csv", ex[k])
    from replicate.experiments import report

    report.insert_sections(Path(run_dir))
