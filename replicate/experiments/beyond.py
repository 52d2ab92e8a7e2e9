""""Beyond the paper": the questions Zhu et al. 2019 could not answer, run on a finished grid (issue 12, phase 2).

:func:`run_beyond` takes a finished grid (its :class:`replicate.experiments.grid.Runner` and the results
``{cell_id: [FoldResult]}``) and writes, atomically and resumably (a file whose inputs, settings and code are
unchanged is read back, not recomputed; the keys live in ``RUN/state`` like the grid's folds):

* ``results/paired_tests.csv`` -- paired bootstrap tests of the paper's claims on the grid's own out-of-fold scores
  (:mod:`replicate.experiments.paired`: Efron & Tibshirani 1993; DeLong 1988 beside; Holm 1979);
* ``results/permutation.json`` -- whole-pipeline permutation test (Ojala & Garriga 2010) of the deep-feature
  headline cell and of the best of the deep-feature configurations the paper chose from
  (:mod:`replicate.experiments.permutation`);
* ``results/nested_cv.csv`` -- nested CV (Varma & Simon 2006) of the kernel / patch size / network and layer
  choices, beside "as the paper chose (selected on test folds)" (:mod:`replicate.experiments.nested_cv`);
* ``results/baselines.csv`` -- hand-crafted (kinetic, texture, all) and confounder (box size, scanner) baselines
  (:mod:`replicate.experiments.baselines`, :mod:`replicate.cohort.handcrafted`);
* ``results/learning_curve.csv`` + ``figures/learning_curve.png`` -- AUC against cohort size
  (:mod:`replicate.experiments.learning_curve`);
* ``results/svm_units.csv`` -- every deep-feature cell refitted with one SVM sample per patient beside the grid's
  per-patch reading (:mod:`replicate.experiments.svm_units`).

Scope (cheap, every preset with ``beyond=True``): everything above reuses the cached deep features and refits only
SVMs / logistic regressions. The nested choice of the learning rate (Figure 2) and learning curves of *trained* nets
retrain nets hundreds of times: they run only with ``preset.beyond_trained`` (the paper preset) or ``run
--beyond-trained`` (:mod:`replicate.experiments.trainedcv`), their rows added to ``nested_cv.csv`` and
``learning_curve.csv``. Re-running the whole pipeline of a trained net with permuted labels is not run.

**The SVM-side analyses (permutation, nested CV, learning curve) use the per-patient reading of the SVM's training
unit**: one sample per patient, the mean of its patches' features (:func:`featurecv.patient_mean_features`;
issue 10's ``unit="patient"`` reading). Patch-level SVC fits cost seconds each and a permutation test needs
thousands; the per-patient fits cost hundredths. Their cells are therefore named ``<grid cell> [per patient]`` and
their AUCs differ from the grid's patch-level cells (the paired tests use the grid's own scores).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.atomic import write_json as atomic_write_json
from replicate.experiments.protocol import ProtocolError

FILES = ("paired_tests.csv", "permutation.json", "nested_cv.csv", "baselines.csv", "learning_curve.csv")
SECTION_TITLE = "## Beyond the paper"
PER_PATIENT = " [per patient]"
#: The deep-feature headline (Table 5's GoogLeNet, patch 120, polynomial kernel: the paper's 0.65).
HEADLINE = ("GoogleNet", 120, "poly")


# ------------------------------------------------------------------------------------------------ helpers
def _sha1(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, pd.DataFrame):
            h.update(pd.util.hash_pandas_object(p, index=False).to_numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


def _file_sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


class _Steps:
    """Resume bookkeeping: a step's key = its name + a digest of its inputs + the preset + the code version; the
    step is skipped when its key is done in RUN/state and every file it wrote is there with the same SHA1."""

    def __init__(self, runner):
        self.runner = runner
        self.state = runner.state
        self.base = f"preset={runner.preset_hash()}|code={runner.code_hash('beyond')}"
        self.ran: dict[str, str] = {}

    def run(self, name: str, digest: str, files: list[Path], compute) -> None:
        key = f"beyond|{name}|{digest}|{self.base}"
        if self.state.done(key):
            saved = self.state.load(key)
            if all(Path(f).exists() and _file_sha1(f) == saved.get(str(Path(f).name)) for f in files):
                self.ran[name] = "resumed"
                return
        t0 = time.perf_counter()
        compute()
        self.state.save(key, {Path(f).name: _file_sha1(f) for f in files})
        self.ran[name] = f"{time.perf_counter() - t0:.1f} s"


def not_comparable(preset, flags: dict, synthetic: bool, provenance: dict | None = None) -> list[str]:
    """Why the run's numbers cannot be set beside the paper's (empty: comparable).

    With the run's ``provenance`` this is the comparison's own gate (``compare.comparison.run_gate``: synthetic
    cohort, a preset departing from the paper's with its departures named, folds x repeats below the paper's)
    plus the cells' flags (no or unverified weights), so the section is flagged exactly as ``comparison.csv``'s
    cells are; without it (a bare call), the same reasons from the preset alone."""
    if provenance is not None:
        from compare.comparison import run_gate

        return run_gate(provenance) + sorted(set(flags.values()))
    why = []
    if synthetic:
        why.append("synthetic cohort")
    if preset.name != "paper":
        why.append(f"reduced preset `{preset.name}`")
    if preset.n_folds < 10 or preset.n_repeats < 5:
        why.append(f"{preset.n_folds} folds x {preset.n_repeats} repeats (paper: 10 x 5)")
    for f in sorted(set(flags.values())):
        why.append(f)
    return why


# ------------------------------------------------------------------------------------------------ inputs
def patient_features(runner) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Every deep-feature cell of the preset -> ``(X (patients, D), patient ids, kernel)``: the mean of each
    patient's patch features (its training and scoring patches of the grid's row selection), read from the
    feature cache the grid filled (a missing cache entry is extracted)."""
    from replicate.experiments import grid
    from replicate.experiments.featurecv import patient_mean_features

    out, feats = {}, {}
    for c in grid.unique_cells(runner.p):
        if c.approach != "features":
            continue
        k = (c.network, c.patch_size)
        if k not in feats:
            feats[k] = runner.features(c)
        f = feats[k]
        pids = runner.store(c.patch_size).index["patient_id"].to_numpy()[f["rows"]]
        X, ids = patient_mean_features(f["blobs"][c.blob], pids)
        out[c.id] = (X, ids, c.kernel)
    return out


class PatientCandidate:
    """A candidate (:mod:`replicate.experiments.featurecv`) on one feature row per patient: fit
    :func:`replicate.experiments.svm.make_svm` (``kernel``) on the training patients' rows, score the scored
    patients' rows. The same numbers as ``FeatureCandidate(X, ids, make_svm)`` (a patient's mean over one row is
    that row), without its per-call row masks and group-by, which dominate a per-patient fit's cost."""

    def __init__(self, X: np.ndarray, ids, kernel: str):
        self.X, self.kernel = np.asarray(X, dtype=np.float64), kernel
        self.pos = {str(p): i for i, p in enumerate(ids)}

    def __call__(self, train_ids, score_ids, train_labels) -> pd.Series:
        from replicate.experiments.svm import make_svm

        y = np.asarray(train_labels).astype(int)
        if len(np.unique(y)) != 2:
            raise ProtocolError("features: the training patients hold one class only")
        tr = [self.pos[str(i)] for i in train_ids]
        sc = [self.pos[str(i)] for i in score_ids]
        m = make_svm(self.kernel).fit(self.X[tr], y)
        return pd.Series(m.decision_function(self.X[sc]), index=[str(i) for i in score_ids])


def _candidate(X, ids, kernel):
    return PatientCandidate(X, ids, kernel)


def evaluate_many(cands: list, patients: pd.DataFrame, n_folds: int, seed: int) -> np.ndarray:
    """(k,) fold-averaged test AUC of each candidate under one repeat of the protocol on ``patients`` (folds made
    once from its labels, shared by the k candidates): ``featurecv.cv_auc`` with ``n_repeats=1`` for k cells."""
    from replicate.experiments.featurecv import fast_auc
    from replicate.experiments.protocol import patient_folds, repeat_seed

    lab = dict(zip(patients["patient_id"].astype(str), patients["label"].astype(int)))
    folds = patient_folds(patients, n_folds, seed=repeat_seed(seed, 0), repeat=0)
    out = np.empty(len(cands))
    for j, c in enumerate(cands):
        aucs = []
        for f in folds:
            s = c(f.train_ids, f.test_ids, [lab[i] for i in f.train_ids])
            aucs.append(fast_auc([lab[i] for i in f.test_ids], s.to_numpy()))
        out[j] = float(np.mean(aucs))
    return out


def headline_id(preset) -> str | None:
    from replicate.experiments import grid

    for c in grid.cells(preset)["table5"]:
        if (c.network, c.patch_size, c.kernel) == HEADLINE:
            return c.id
    return None


# ------------------------------------------------------------------------------------------------ steps
def _paired(runner, results, flags, path: Path) -> None:
    from replicate.experiments.paired import claims, paired_tests, predictions_frame
    from replicate.experiments.report import write_csv

    p = runner.p
    df = paired_tests(predictions_frame(results), claims(p), n_boot=p.n_boot, seed=p.seed)
    df["flag"] = [" ; ".join(sorted({flags[c] for c in (r.a_cells + "|" + r.b_cells).split("|") if c in flags}))
                  for r in df.itertuples()]
    write_csv(path, df)


def reported_cell(results: dict, cell_id: str | None, n_folds: int = 10) -> dict:
    """The grid's own number for ``cell_id`` (the cell a table reports) and what permuting it would cost:
    ``{"cell", "test_auc", "fold_seconds", "estimated_permutation_seconds"}`` (n_perm x the seconds its folds took
    in this run; feature cells count their SVM fits only). Empty for a cell the run has not computed."""
    from replicate.experiments.protocol import summarise

    rs = results.get(cell_id) if cell_id else None
    if not rs:
        return {}
    secs = float(sum((getattr(r, "extra", {}) or {}).get("seconds", 0.0) for r in rs))
    return {"cell": cell_id, "test_auc": float(summarise(rs, n_folds=n_folds).test_auc), "fold_seconds": secs}


def _permutation(runner, feats, path: Path, progress: bool, reported: dict | None = None) -> None:
    """The permutation test of the deep-feature configurations. What it tests is the per-patient variant (one mean
    feature row a patient, :func:`patient_features`), not the grid's patch-level cell: rerunning the patch-level
    SVM folds ``n_perm`` times costs ``n_perm`` x the cell's fold time (``reported``), hours at the paper's patch
    counts. The file and the report say so next to the reported cell's own AUC."""
    from replicate.experiments.permutation import permutation_test

    p = runner.p
    names = list(feats)
    cands = [_candidate(*feats[n]) for n in names]

    def evaluate(pts):
        return evaluate_many(cands, pts, p.n_folds, p.seed)

    bar = _bar(p.n_perm, "beyond: permutations", progress)
    res = permutation_test(evaluate, runner.patients, n_perm=p.n_perm, seed=p.seed, names=[n + PER_PATIENT
                                                                                           for n in names],
                           progress=bar)
    if bar is not None:
        bar.close()
    head = headline_id(p)
    out = {"features": {**res.to_json(), "unit": "patient (mean of its patch features)",
                        "headline": (head + PER_PATIENT) if head in names else None,
                        "headline_observed": float(res.observed[names.index(head)]) if head in names else None,
                        "headline_p": float(res.p[names.index(head)]) if head in names else None,
                        "tests": "the per-patient variant of each configuration (SVM on each patient's mean patch "
                                 "features), not the patch-level cells the tables report",
                        "reported_cell": {**(reported or {}),
                                          "estimated_permutation_seconds": (p.n_perm * reported["fold_seconds"]
                                                                            if reported else None)}},
           "scratch": {"status": "not run: a whole-pipeline permutation of a trained net retrains it n_perm x "
                                 "folds times"},
           "transfer": {"status": "not run: a whole-pipeline permutation of a trained net retrains it n_perm x "
                                  "folds times"}}
    atomic_write_json(path, out)


def _nested(runner, feats, path: Path, progress: bool) -> None:
    from replicate.experiments import grid
    from replicate.experiments.featurecv import cv_summary
    from replicate.experiments.nested_cv import nested_cv
    from replicate.experiments.protocol import summarise
    from replicate.experiments.report import write_csv

    p = runner.p
    t = grid.cells(p)
    groups = {
        "kernel x patch size x network (Table 5)": [c.id for c in t["table5"]],
        "layer (Table 6)": [c.id for c in t["table6"]],
        "all deep-feature configurations (Tables 5-6)": list(dict.fromkeys([c.id for c in t["table5"] + t["table6"]])),
    }
    rows = []
    for what, ids in groups.items():
        ids = [i for i in ids if i in feats]
        if len(ids) < 2:
            continue
        cands = {i: _candidate(*feats[i]) for i in ids}
        bar = _bar(p.n_folds, f"beyond: nested CV, {what}", progress)
        r = nested_cv(cands, runner.patients, n_folds=p.n_folds, n_repeats=1, seed=p.seed, progress=bar)
        if bar is not None:
            bar.close()
        top = r["table"].query("estimate == 'chosen_on_test'")["chosen"].iloc[0]
        s_top = cv_summary(cands[top], runner.patients, p.n_folds, 1, p.seed, n_boot=p.n_boot)
        s_nest = summarise(r["nested_folds"], n_folds=p.n_folds, n_boot=p.n_boot, seed=p.seed)
        picked = r["table"].query("estimate == 'nested'")["chosen"].iloc[0]
        rows.append({"choice": what, "estimate": "chosen_on_test", "test_auc": r["chosen_on_test"],
                     "ci_low": s_top.ci_low, "ci_high": s_top.ci_high, "optimism": r["optimism"],
                     "chosen": top + PER_PATIENT, "n_candidates": len(ids), "method": r["method"]})
        rows.append({"choice": what, "estimate": "nested", "test_auc": r["nested"], "ci_low": s_nest.ci_low,
                     "ci_high": s_nest.ci_high, "optimism": 0.0, "chosen": picked, "n_candidates": len(ids),
                     "method": r["method"]})
    write_csv(path, pd.DataFrame(rows, columns=["choice", "estimate", "test_auc", "ci_low", "ci_high", "optimism",
                                                "chosen", "n_candidates", "method"]))


def handcrafted_features(runner, path: Path, progress: bool) -> pd.DataFrame:
    """:func:`replicate.cohort.handcrafted.cohort_features` of the grid's cohort, restricted to its patients."""
    from replicate.cohort.handcrafted import cohort_features
    from replicate.experiments.report import write_csv

    store = runner.stores[sorted(runner.stores)[0]]
    keep = set(runner.patients["patient_id"])
    recs = [r for r in store.cohort.included if str(r.patient_id) in keep]
    target = store.cohort.target_spacing() if hasattr(store.cohort, "target_spacing") else None
    df = cohort_features(recs, target_spacing=target, progress=progress)
    write_csv(path, df)
    return df


def _baselines(runner, hc: pd.DataFrame, path: Path) -> None:
    from replicate.experiments.baselines import evaluate_baselines
    from replicate.experiments.report import write_csv

    p = runner.p
    write_csv(path, evaluate_baselines(hc, n_folds=p.n_folds, n_repeats=p.n_repeats, seed=p.seed, n_boot=p.n_boot))


def _learning_curve(runner, feats, hc: pd.DataFrame, path: Path, fig: Path, progress: bool) -> None:
    from replicate.experiments.baselines import design, make_classifier
    from replicate.experiments.featurecv import FeatureCandidate, cv_summary
    from replicate.experiments.learning_curve import learning_curve, plot_learning_curve
    from replicate.experiments.report import _savefig, write_csv

    p = runner.p
    cells = {}
    head = headline_id(p)
    if head in feats:
        cells[head + PER_PATIENT] = _candidate(*feats[head])
    hc = hc.reset_index(drop=True)
    cells["kinetic baseline (logistic)"] = FeatureCandidate(design(hc, "kinetic"), hc["patient_id"].astype(str),
                                                            lambda: make_classifier("logistic"))
    n_boot = min(p.n_boot, 200)
    frames = []
    for name, cand in cells.items():
        frames.append(learning_curve(lambda sub, c=cand: cv_summary(c, sub, p.n_folds, 1, p.seed, n_boot=n_boot),
                                     runner.patients, sizes=p.learning_curve_sizes, draws=p.learning_curve_draws,
                                     seed=p.seed, cell=name, min_per_class=p.n_folds))
    df = pd.concat(frames, ignore_index=True)
    write_csv(path, df)
    f = plot_learning_curve(df, title="AUC vs cohort size (stratified subsets)")
    _savefig(f, fig)


def _bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False)


# ------------------------------------------------------------------------------------------------ entry point
def run_beyond(runner, results: dict, flags: dict | None = None, synthetic: bool = False,
               progress: bool = True, provenance: dict | None = None, trained: bool | None = None) -> str:
    """Run every "beyond the paper" analysis on a finished grid; write the five result files (+ the learning-curve
    figure and ``results/handcrafted_features.csv``) under ``runner.run_dir``; return the report's section.

    ``runner``: the :class:`replicate.experiments.grid.Runner` that ran the grid (its preset, patch stores, feature
    cache, patients and RunState); ``results``: its ``run_all()`` output; ``flags``: cell id -> flag (e.g. no
    pretrained weights); ``synthetic``: the cohort is synthetic; ``provenance``: the run's provenance, whose
    comparability gate (``compare.comparison.run_gate``) flags the section; ``trained``: also run the trained-net
    analyses (:mod:`replicate.experiments.trainedcv`; None = ``preset.beyond_trained``). Raises ProtocolError for
    inconsistent results."""
    flags = flags or {}
    p = runner.p
    run_dir = Path(runner.run_dir)
    res_dir, fig_dir = run_dir / "results", run_dir / "figures"
    res_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = _Steps(runner)
    from replicate.experiments.paired import predictions_frame

    pred = predictions_frame(results)
    steps.run("paired_tests", _sha1(pred, p.n_boot, sorted(flags.items())), [res_dir / "paired_tests.csv"],
              lambda: _paired(runner, results, flags, res_dir / "paired_tests.csv"))
    feats = patient_features(runner)
    fdig = _sha1(runner.patients, *[(k, v[2]) for k, v in feats.items()], *[v[0] for v in feats.values()])
    from replicate.experiments import svm_units

    steps.run("svm_units", _sha1(fdig, pred, p.svm_unit, p.n_boot), [res_dir / "svm_units.csv"],
              lambda: svm_units.write_table(runner, results, res_dir / "svm_units.csv"))
    reported = reported_cell(results, headline_id(p), p.n_folds)
    steps.run("permutation", _sha1(fdig, reported.get("cell"), reported.get("test_auc")),
              [res_dir / "permutation.json"],
              lambda: _permutation(runner, feats, res_dir / "permutation.json", progress, reported))
    trained = bool(p.beyond_trained if trained is None else trained)
    tn, tl = res_dir / "nested_cv_trained.csv", res_dir / "learning_curve_trained.csv"
    if trained:  # nested CV over learning rates, learning curves of trained nets (trainedcv; units in RUN/state)
        from replicate.experiments import trainedcv

        steps.run("trained_nested_cv", _sha1(runner.patients), [tn],
                  lambda: trainedcv.nested_lr(runner, tn, progress))
        steps.run("trained_learning_curve", _sha1(runner.patients), [tl],
                  lambda: trainedcv.learning_curve_trained(runner, tl, progress))

    def nested_compute():
        _nested(runner, feats, res_dir / "nested_cv.csv", progress)
        if trained:
            trainedcv.append_rows(res_dir / "nested_cv.csv", tn)

    steps.run("nested_cv", _sha1(fdig, _file_sha1(tn)) if trained else fdig, [res_dir / "nested_cv.csv"],
              nested_compute)
    hc_path = res_dir / "handcrafted_features.csv"
    box = {"df": None}

    def hc_compute():
        box["df"] = handcrafted_features(runner, hc_path, progress)

    st = runner.stores[sorted(runner.stores)[0]]
    steps.run("handcrafted_features", _sha1(runner.patients, st.key), [hc_path], hc_compute)
    hc = box["df"] if box["df"] is not None else pd.read_csv(hc_path)
    hdig = _sha1(hc)
    steps.run("baselines", hdig, [res_dir / "baselines.csv"], lambda: _baselines(runner, hc, res_dir / "baselines.csv"))
    def lc_compute():
        _learning_curve(runner, feats, hc, res_dir / "learning_curve.csv", fig_dir / "learning_curve.png", progress)
        if trained:
            trainedcv.append_rows(res_dir / "learning_curve.csv", tl, fig_dir / "learning_curve.png")

    steps.run("learning_curve", _sha1(fdig, hdig, _file_sha1(tl)) if trained else _sha1(fdig, hdig),
              [res_dir / "learning_curve.csv", fig_dir / "learning_curve.png"], lc_compute)
    seconds = time.perf_counter() - t0
    return section(run_dir, not_comparable(p, flags, synthetic, provenance), steps.ran, seconds)


# ------------------------------------------------------------------------------------------------ report
def _f(v, nd=2) -> str:
    try:
        return "—" if v is None or pd.isna(v) else f"{float(v):.{nd}f}"
    except (TypeError, ValueError):
        return str(v)


def _claim_verdict(g: pd.DataFrame) -> str:
    """A claim "a beats b" for every comparison of its family: supported when every difference is > 0 with
    p below :data:`paired.ALPHA` in :data:`paired.DECIDING_P` (Holm across every comparison of every claim);
    contradicted when any is < 0 at that level; otherwise not supported."""
    from replicate.experiments.paired import ALPHA, DECIDING_P

    sig = g[DECIDING_P] < ALPHA
    if ((g["diff"] < 0) & sig).any():
        return "contradicted (a significant difference the other way)"
    if ((g["diff"] > 0) & sig).all():
        return "supported"
    return "not supported (no significant difference)"


def section(run_dir: Path, why_not: list[str], ran: dict | None = None, seconds: float | None = None) -> str:
    """The report's "Beyond the paper" section, read back from the five result files."""
    from replicate.experiments.paired import claims as _claims

    r = Path(run_dir) / "results"
    L = [SECTION_TITLE, ""]
    if why_not:
        L += [f"> **Not comparable with the paper** ({'; '.join(why_not)}): these analyses say what this run "
              "shows, not what the paper's data would.", ""]
    if seconds is not None:
        L += [f"Compute: {seconds:.1f} s this invocation ("
              + ", ".join(f"{k} {v}" for k, v in (ran or {}).items()) + ").", ""]
    # claims
    pt = pd.read_csv(r / "paired_tests.csv")
    L += ["### The paper's claims, tested (results/paired_tests.csv)", "",
          "Paired, label-stratified patient bootstrap of the difference of fold-averaged AUCs on the grid's own "
          "out-of-fold scores (both cells recomputed on each resample; a \"best of\" side re-selected in each "
          "resample; Efron & Tibshirani 1993). The p-value inverts the same percentile interval, so the 95% CI "
          "excludes 0 exactly when p (boot) < 0.05. Holm-corrected within each claim and across all the claims' "
          "comparisons together (Holm 1979); **the across-all-claims Holm p decides**, at 0.05, so the error rate "
          "is held over the paper's claims as a whole. DeLong's p on pooled scores beside it (DeLong et al. 1988), "
          "informative only.", "",
          "| claim | comparison | diff | 95% CI | p (boot) | p (Holm, claim) | p (Holm, all claims) | DeLong p | flag |",
          "|---|---|---|---|---|---|---|---|---|"]
    for x in pt.itertuples():
        L.append(f"| {x.claim} | {x.comparison} | {_f(x.diff, 3)} | [{_f(x.ci_low, 3)}, {_f(x.ci_high, 3)}] | "
                 f"{_f(x.p_boot, 3)} | {_f(x.p_holm_claim, 3)} | {_f(x.p_holm_all, 3)} | {_f(x.delong_p, 3)} | "
                 f"{'' if pd.isna(x.flag) else x.flag} |")
    L += [""]
    for cl in _claims():
        g = pt[pt["claim"] == cl.id]
        verdict = _claim_verdict(g) if len(g) else "not tested (its cells are not in this run)"
        L.append(f"- \"{cl.text}\" ({cl.where}): **{verdict}**.")
    L += ["", "Each claim is supported only when every difference of its family is positive with a Holm-adjusted "
              "p (across all claims) below 0.05.", ""]
    # permutation
    pj = json.loads((r / "permutation.json").read_text())
    f = pj["features"]
    L += ["### Permutation test (results/permutation.json)", "",
          f"Labels permuted across patients {f['n_perm']} times and every deep-feature configuration re-evaluated "
          f"under the protocol on the per-patient features (Ojala & Garriga 2010). Headline "
          f"`{f.get('headline')}`: AUC {_f(f.get('headline_observed'))}, p = {_f(f.get('headline_p'), 3)}; best of "
          f"the {len(f['configurations'])} configurations: AUC {_f(f['observed_max'])}, p = {_f(f['p_max'], 3)} "
          f"(null maximum: median {_f(f['null_max_quantiles']['0.5'])}, 95th percentile "
          f"{_f(f['null_max_quantiles']['0.95'])}). This shows whether the features carry signal beyond what "
          "picking the best of many configurations on chance labels gives. Trained nets: "
          f"{pj['scratch']['status']}.", ""]
    rc = f.get("reported_cell") or {}
    if rc.get("cell"):
        est = rc.get("estimated_permutation_seconds")
        L += [f"**What this tests**: {f.get('tests', 'the per-patient variant')}. It is *not* a test of the "
              f"reported cell `{rc['cell']}` (AUC {_f(rc.get('test_auc'))} in Table 5 of this run): permuting that "
              f"patch-level cell would rerun its folds {f['n_perm']} times, about "
              f"{_f((est or 0) / 60, 1)} min at this run's fold time.", ""]
    # nested
    nc = pd.read_csv(r / "nested_cv.csv")
    L += ["### Nested cross-validation of the paper's choices (results/nested_cv.csv)", "",
          "\"As the paper chose\" = the best configuration picked on the test folds; \"nested\" = an inner 5-fold "
          "CV on each outer training side picks it (Varma & Simon 2006). The gap is the selection optimism.", "",
          "| choice | as the paper chose (test folds) | nested CV | optimism | chosen |", "|---|---|---|---|---|"]
    for what, g in nc.groupby("choice", sort=False):
        a = g[g.estimate == "chosen_on_test"].iloc[0]
        b = g[g.estimate == "nested"].iloc[0]
        L.append(f"| {what} | {_f(a.test_auc)} [{_f(a.ci_low)}, {_f(a.ci_high)}] | {_f(b.test_auc)} "
                 f"[{_f(b.ci_low)}, {_f(b.ci_high)}] | {_f(a.optimism, 3)} | {a.chosen} |")
    lr_rows = nc["choice"].astype(str).str.startswith("learning rate")
    L += ["", ("Learning-rate choices (Figure 2): nested over each sweep's learning rates with the nets retrained "
               "inside every inner fold (the outer fits are the grid's sweep cells)." if lr_rows.any() else
               "Learning-rate choices (Figure 2): not run (the paper preset or --beyond-trained runs them: every "
               "net is retrained inside each inner fold)."), ""]
    # baselines
    bl = pd.read_csv(r / "baselines.csv")
    L += ["### Hand-crafted and confounder baselines (results/baselines.csv)", "",
          "Kinetic, texture (scikit-image GLCM) and size/shape features of the same box and subtraction channels, "
          "and two confounders (box size alone, scanner alone), under the same protocol and CI.", "",
          "| baseline | classifier | test AUC | 95% CI |", "|---|---|---|---|"]
    for x in bl.itertuples():
        L.append(f"| {x.baseline} | {x.classifier} | {_f(x.test_auc)} | [{_f(x.ci_low)}, {_f(x.ci_high)}] |")
    found = bl[bl.ci_low > 0.5]
    L += ["", "Baselines whose 95% CI lies above 0.5: "
          + (", ".join(sorted(set(found.baseline))) if len(found) else "none")
          + ". A confounder above chance would mean the labels can be read off the box or the scanner.", ""]
    # learning curve
    lc = pd.read_csv(r / "learning_curve.csv")
    from replicate.experiments.learning_curve import curve_summary

    s = curve_summary(lc)
    L += ["### Learning curve (results/learning_curve.csv)", "",
          "Each cell re-evaluated under the protocol on stratified random subsets of the cohort (median over draws, "
          "2.5-97.5% band); a rising curve supports the paper's claim that more patients would help.", "",
          "| cell | patients | draws | median AUC | band |", "|---|---|---|---|---|"]
    for x in s.itertuples():
        L.append(f"| {x.cell} | {x.n_patients} | {x.draws} | {_f(x.median)} | [{_f(x.low)}, {_f(x.high)}] |")
    from replicate.experiments.trainedcv import TRAINED

    tc = sorted({c for c in lc["cell"].astype(str) if c.endswith(TRAINED)})
    L += ["", ("Learning curves of trained nets (retrained on every subset's folds): " + ", ".join(f"`{c}`" for c in tc)
               + "." if tc else "Learning curves of trained nets: not run (the paper preset or --beyond-trained "
               "runs them)."), "", "![Learning curve](figures/learning_curve.png)", ""]
    from replicate.experiments.svm_units import section_lines

    L += section_lines(r / "svm_units.csv")
    return "\n".join(L)
