"""Trained nets as candidates of the "beyond the paper" analyses: nested CV over the Figure 2 learning rates and
learning curves of trained nets (issue 12, "Performance and scope per preset": the paper preset, or
``--beyond-trained``).

:class:`TrainedCandidate` satisfies the :data:`replicate.experiments.featurecv.Candidate` protocol
(``fit_score(train_ids, score_ids, train_labels) -> pd.Series``) for one grid cell (scratch or transfer): it trains
the cell's net on the training patients' patches and returns the scoring patients' patient scores (mean of their
patch P(class 1), Zhu et al. 2019 "Model Evaluation"). It goes through the grid's own code path,
:meth:`replicate.experiments.grid.Runner.run_unit` (``training.fold_data`` -> ``TrainSettings`` built exactly as for
the cell -> ``training.train_fold``), on a :class:`replicate.experiments.protocol.Fold` made from the ids:

* a split equal to one of the grid's folds (same training and scoring patients as ``runner.folds[r][f]``) *is* that
  grid unit: it is read from / stored under ``runner.unit_key(cell, r, f)`` with the grid's seed, so the outer-fold
  fits of the nested CV, and the full-cohort point of a learning curve, reuse the grid's results (and a grid run
  after them reuses theirs);
* any other split (an inner fold, a learning-curve subset's fold) is keyed
  ``trainedcv|<cell id>|split=<SHA1 of the sorted training and scoring ids>|store=..|w=..|device=..|preset=..|code=..``
  (the grid unit key's tail: patch store, weights, device, preset hash, code version) in the runner's ``RUN/state``;
  its seed is ``runner.unit_seed(cell, -1, n)`` with ``n`` from the same SHA1, so it is deterministic in (cell id,
  ids, preset seed). A rerun reads every finished split back; nothing is retrained.

Training uses the cohort's own labels (the patch store's): a candidate called with other labels (a permutation)
raises ProtocolError rather than silently training on the true ones.

Headline trained cells (:data:`HEADLINE_TRAINED`) are fixed in code, never chosen by an AUC of this run: Table 3's
CIFAR (the paper's Results: CIFAR "had the highest AUC on test set" of the four scratch nets) and Table 4's GoogLeNet
(the net of Figure 2b and of the transfer sweep).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.experiments.nested_cv import INNER_FOLDS
from replicate.experiments.protocol import Fold, FoldResult, ProtocolError

#: approach -> (table, network) of the trained cell each approach's learning curve follows.
HEADLINE_TRAINED = {"scratch": ("table3", "CIFAR"), "transfer": ("table4", "GoogleNet")}
#: The Figure 2 sweeps nested over their learning rates: grid.cells() group -> label in ``choice``.
SWEEPS = {"sweep_scratch": "scratch", "sweep_transfer": "transfer"}
TRAINED = " [trained net]"     # suffix of the learning-curve cells of trained nets


def split_digest(train_ids, score_ids) -> str:
    """SHA1 (16 hex) of the sorted training and scoring patient ids: the identity of a split."""
    h = hashlib.sha1()
    h.update("|".join(sorted(map(str, train_ids))).encode())
    h.update(b"#")
    h.update("|".join(sorted(map(str, score_ids))).encode())
    return h.hexdigest()[:16]


class TrainedCandidate:
    """A candidate that trains ``cell`` (scratch or transfer) of ``runner``'s grid on each split it is given.

    ``runner``: :class:`replicate.experiments.grid.Runner` (preset, patch stores, device, RunState). Counters:
    ``trained`` (splits trained by this object), ``reused`` (splits read back from ``RUN/state``, grid units
    included). Raises ProtocolError for a split with one class, labels other than the cohort's, or scoring patients
    left without a score."""

    def __init__(self, runner, cell):
        if cell.approach not in ("scratch", "transfer"):
            raise ProtocolError(f"trained-net candidate: cell {cell.id} is not a trained cell")
        self.runner, self.cell = runner, cell
        self.trained = self.reused = 0
        self._labels = dict(zip(runner.patients["patient_id"].astype(str), runner.patients["label"].astype(int)))
        self._grid = {}
        for folds in runner.folds.values():
            for f in folds:
                self._grid[split_digest(f.train_ids, f.test_ids)] = f

    def key_and_fold(self, train_ids, score_ids) -> tuple[str, Fold]:
        """The RunState key and the Fold of a split (a grid fold when the split is one)."""
        d = split_digest(train_ids, score_ids)
        if d in self._grid:
            f = self._grid[d]
            return self.runner.unit_key(self.cell, f.repeat, f.fold), f
        # store=..|w=..|device=..|preset=..|code=..; this module builds the split's Fold, so its code is in the key
        tail = self.runner.unit_key(self.cell, 0, 0, kind="split").split("|", 3)[3]
        n = int(d[:8], 16)
        fold = Fold(-1, n, n, tuple(map(str, train_ids)), tuple(map(str, score_ids)))
        return f"trainedcv|{self.cell.id}|split={d}|{tail}", fold

    def result(self, train_ids, score_ids) -> FoldResult:
        """The split's FoldResult: read back from ``RUN/state``, or trained (``Runner.run_unit``) and stored."""
        key, fold = self.key_and_fold(train_ids, score_ids)
        st = self.runner.state
        if st.done(key):
            self.reused += 1
            return FoldResult.from_json(st.load(key))
        t0 = time.perf_counter()
        res = self.runner.run_unit(self.cell, fold, None)
        res.extra["seconds"] = time.perf_counter() - t0
        st.save(key, res.to_json())
        self.trained += 1
        return res

    def __call__(self, train_ids, score_ids, train_labels) -> pd.Series:
        train_ids, score_ids = [str(i) for i in train_ids], [str(i) for i in score_ids]
        y = np.asarray(train_labels).astype(int)
        if len(np.unique(y)) != 2:
            raise ProtocolError(f"{self.cell.id}: the training patients hold one class only")
        if any(self._labels.get(i) != int(v) for i, v in zip(train_ids, y)):
            raise ProtocolError(f"{self.cell.id}: a trained net learns the cohort's own labels (the patch store's); "
                                "it cannot be given other labels (e.g. permuted)")
        res = self.result(train_ids, score_ids)
        s = pd.Series([float(v) for v in res.test_scores], index=[str(i) for i in res.test_ids])
        missing = sorted(set(score_ids) - set(s.index))
        if missing:
            raise ProtocolError(f"{self.cell.id}: no patient score for {missing[:3]} (no scoring patches?)")
        return s.reindex(score_ids)


def headline_cells(preset) -> list:
    """The trained cells of :data:`HEADLINE_TRAINED` in ``preset``'s grid (``grid.cells``)."""
    from replicate.experiments import grid

    t = grid.cells(preset)
    out = []
    for table, network in HEADLINE_TRAINED.values():
        out += [c for c in t[table] if c.network == network][:1]
    return out


def _bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False)


# ------------------------------------------------------------------------------------------------ analyses
def nested_lr(runner, path: Path | None = None, progress: bool = False, sweeps=tuple(SWEEPS),
              n_inner: int | None = None) -> pd.DataFrame:
    """Nested CV (:func:`replicate.experiments.nested_cv.nested_cv`, one repeat, the grid's outer folds) over the
    learning rates of each Figure 2 sweep (``grid.cells(preset)[sweep]``: candidates = its cells, one per lr).

    Returns (and writes to ``path``, atomically) the rows of ``results/nested_cv.csv`` (``beyond._nested``'s
    columns), ``choice`` = "learning rate (Figure 2, <scratch|transfer> <network>)", ``chosen`` = cell id(s).
    The outer fits are the grid's sweep units (reused); the inner CV trains ``n_lr x n_inner x n_folds`` nets."""
    from replicate.experiments import grid
    from replicate.experiments.featurecv import cv_summary
    from replicate.experiments.nested_cv import nested_cv
    from replicate.experiments.protocol import summarise

    p = runner.p
    n_inner = INNER_FOLDS if n_inner is None else int(n_inner)
    t = grid.cells(p)
    rows = []
    for sweep in sweeps:
        cs = list({c.id: c for c in t[sweep]}.values())
        if len(cs) < 2:
            continue
        cands = {c.id: TrainedCandidate(runner, c) for c in cs}
        what = f"learning rate (Figure 2, {SWEEPS[sweep]} {cs[0].network})"
        bar = _bar(p.n_folds, f"beyond: nested CV, {what}", progress)
        r = nested_cv(cands, runner.patients, n_folds=p.n_folds, n_repeats=1, n_inner=n_inner, seed=p.seed,
                      progress=bar)
        if bar is not None:
            bar.close()
        top = r["table"].query("estimate == 'chosen_on_test'")["chosen"].iloc[0]
        s_top = cv_summary(cands[top], runner.patients, p.n_folds, 1, p.seed, n_boot=p.n_boot)   # grid units
        s_nest = summarise(r["nested_folds"], n_folds=p.n_folds, n_boot=p.n_boot, seed=p.seed)
        picked = r["table"].query("estimate == 'nested'")["chosen"].iloc[0]
        rows.append({"choice": what, "estimate": "chosen_on_test", "test_auc": r["chosen_on_test"],
                     "ci_low": s_top.ci_low, "ci_high": s_top.ci_high, "optimism": r["optimism"], "chosen": top,
                     "n_candidates": len(cs), "method": r["method"]})
        rows.append({"choice": what, "estimate": "nested", "test_auc": r["nested"], "ci_low": s_nest.ci_low,
                     "ci_high": s_nest.ci_high, "optimism": 0.0, "chosen": picked, "n_candidates": len(cs),
                     "method": r["method"]})
    df = pd.DataFrame(rows, columns=NESTED_COLUMNS)
    if path is not None:
        from replicate.experiments.report import write_csv

        write_csv(path, df)
    return df


NESTED_COLUMNS = ["choice", "estimate", "test_auc", "ci_low", "ci_high", "optimism", "chosen", "n_candidates",
                  "method"]


def learning_curve_trained(runner, path: Path | None = None, progress: bool = False, cells=None) -> pd.DataFrame:
    """:func:`replicate.experiments.learning_curve.learning_curve` of each headline trained cell
    (:func:`headline_cells`, or ``cells``) at ``preset.learning_curve_sizes`` x ``learning_curve_draws``, each
    subset evaluated by :func:`replicate.experiments.featurecv.cv_summary` (``n_folds`` folds, one repeat) on a
    :class:`TrainedCandidate`. The full cohort's folds are the grid's (reused). Returns (and writes to ``path``)
    the rows of ``results/learning_curve.csv``; cell names end in :data:`TRAINED`."""
    from replicate.experiments.featurecv import cv_summary
    from replicate.experiments.learning_curve import COLUMNS, learning_curve

    p = runner.p
    n_boot = min(p.n_boot, 200)
    frames = []
    for c in (headline_cells(p) if cells is None else cells):
        cand = TrainedCandidate(runner, c)
        bar = _bar(None, f"beyond: learning curve, {c.id}", progress)
        frames.append(learning_curve(lambda sub, k=cand: cv_summary(k, sub, p.n_folds, 1, p.seed, n_boot=n_boot),
                                     runner.patients, sizes=p.learning_curve_sizes, draws=p.learning_curve_draws,
                                     seed=p.seed, cell=c.id + TRAINED, min_per_class=p.n_folds, progress=bar))
        if bar is not None:
            bar.close()
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    if path is not None:
        from replicate.experiments.report import write_csv

        write_csv(path, df)
    return df


def append_rows(path: Path, extra: Path, figure: Path | None = None) -> None:
    """Append the rows of ``extra`` (a CSV this module wrote) to ``path`` (same columns), atomically; with
    ``figure``, redraw the learning-curve figure from the combined rows."""
    from replicate.experiments.report import write_csv

    a = pd.read_csv(path)
    b = pd.read_csv(extra)
    df = pd.concat([a, b[a.columns]], ignore_index=True) if len(b) else a
    write_csv(path, df)
    if figure is not None:
        from replicate.experiments.learning_curve import plot_learning_curve
        from replicate.experiments.report import _savefig

        _savefig(plot_learning_curve(df, title="AUC vs cohort size (stratified subsets)"), figure)
