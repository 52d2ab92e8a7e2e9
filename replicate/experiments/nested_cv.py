"""Nested cross-validation of the paper's choices (issue 12, "Beyond the paper", item 3).

Zhu et al. 2019 choose the learning rate (Figure 2), the SVM kernel and patch size (Table 5) and the layer
(Table 6) by looking at the same test-fold AUCs they report: the headline 0.65 is the best of about 18
configurations. Choosing a configuration by its cross-validated AUC and reporting that AUC is optimistically biased
(Varma & Simon 2006, BMC Bioinformatics 7:91; Cawley & Talbot 2010, JMLR 11:2079, on the size of the bias). Nested
CV removes the bias: inside each outer training fold an inner patient-level stratified CV
(:func:`replicate.experiments.protocol.patient_folds` on the outer training patients) scores every candidate, the
candidate with the best inner fold-averaged AUC is refitted on the whole outer training fold and scored on the
outer test fold. The outer folds are the grid's folds (same seeds), so the nested estimate is the fold-averaged AUC
the paper would have reported had it not looked at its test folds.

Reported side by side (one repeat or several; the median repeat as the protocol does):

* ``chosen_on_test``: every candidate evaluated on the outer folds, the best fold-averaged AUC taken ("as the paper
  chose", selected on test folds);
* ``nested``: the honest estimate;
* ``optimism`` = chosen_on_test - nested (the selection optimism).

Candidates are callables ``fit_score(train_ids, score_ids, train_labels) -> pd.Series``
(:mod:`replicate.experiments.featurecv`); :class:`replicate.experiments.featurecv.FeatureCandidate` makes one from
cached features (candidate = kernel x patch size x layer, each with its own X).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from replicate.experiments.featurecv import Candidate, fast_auc, fold_result
from replicate.experiments.protocol import ProtocolError, patient_folds, repeat_seed

INNER_FOLDS = 5


def inner_auc(candidate: Candidate, train_patients: pd.DataFrame, n_inner: int, seed: int) -> float:
    """Fold-averaged AUC of ``candidate`` under an inner ``n_inner``-fold patient-level CV of ``train_patients``."""
    labels = pd.Series(train_patients["label"].astype(int).to_numpy(),
                       index=train_patients["patient_id"].astype(str))
    aucs = []
    for f in patient_folds(train_patients, n_inner, seed=seed):
        r = fold_result(candidate, f, labels)
        aucs.append(fast_auc(r.test_labels, r.test_scores))
    return float(np.mean(aucs))


def nested_cv(candidates: dict[str, Candidate], patients: pd.DataFrame, n_folds: int = 10, n_repeats: int = 1,
              n_inner: int = INNER_FOLDS, seed: int = 0, progress=None) -> dict:
    """Nested CV over ``candidates`` on ``patients`` (columns ``patient_id``, ``label``).

    Outer folds: the grid's (``patient_folds(patients, n_folds, seed=repeat_seed(seed, r))``); inner folds:
    ``n_inner``-fold stratified on each outer training side (seed derived from the outer fold). Ties in the inner AUC
    go to the first candidate in ``candidates`` order. Returns a dict with

    * ``table``: DataFrame, one row per (repeat, estimate) with columns ``repeat, estimate`` (``nested`` |
      ``chosen_on_test``), ``test_auc`` (fold-averaged), ``chosen`` (the candidate(s) picked);
    * ``per_candidate``: DataFrame ``repeat, candidate, test_auc`` (outer fold-averaged AUC of each candidate);
    * ``choices``: DataFrame ``repeat, fold, chosen, inner_auc`` (what the inner CV picked per outer fold);
    * ``nested``, ``chosen_on_test``, ``optimism``: the median-repeat numbers (lower median over repeats);
    * ``nested_folds``: list[FoldResult] of the nested estimate (for the protocol's bootstrap CI).

    Raises ProtocolError when an outer training side has fewer than ``n_inner`` patients of a class."""
    if not candidates:
        raise ProtocolError("nested CV: no candidates")
    names = list(candidates)
    labels = pd.Series(patients["label"].astype(int).to_numpy(), index=patients["patient_id"].astype(str))
    rows, per_cand, choices, nested_folds = [], [], [], []
    for r in range(n_repeats):
        outer = patient_folds(patients, n_folds, seed=repeat_seed(seed, r), repeat=r)
        cand_fold_aucs = {n: [] for n in names}
        nested_aucs = []
        for f in outer:
            tr = patients[patients["patient_id"].astype(str).isin(f.train_ids)]
            inner_seed = repeat_seed(seed, r) * 100 + f.fold + 1
            scores = {n: inner_auc(c, tr, n_inner, inner_seed) for n, c in candidates.items()}
            best = max(names, key=lambda n: (scores[n], -names.index(n)))
            res = None
            for n in names:
                fr = fold_result(candidates[n], f, labels)
                cand_fold_aucs[n].append(fast_auc(fr.test_labels, fr.test_scores))
                if n == best:
                    res = fr
            res.extra = {"chosen": best, "inner_auc": scores[best]}
            nested_folds.append(res)
            nested_aucs.append(fast_auc(res.test_labels, res.test_scores))
            choices.append({"repeat": r, "fold": f.fold, "chosen": best, "inner_auc": scores[best]})
            if progress is not None:
                progress.update(1)
        means = {n: float(np.mean(v)) for n, v in cand_fold_aucs.items()}
        top = max(names, key=lambda n: (means[n], -names.index(n)))
        picked = pd.Series([c["chosen"] for c in choices if c["repeat"] == r]).value_counts()
        rows.append({"repeat": r, "estimate": "nested", "test_auc": float(np.mean(nested_aucs)),
                     "chosen": "; ".join(f"{k} x{v}" for k, v in picked.items())})
        rows.append({"repeat": r, "estimate": "chosen_on_test", "test_auc": means[top], "chosen": top})
        per_cand += [{"repeat": r, "candidate": n, "test_auc": means[n]} for n in names]
    table = pd.DataFrame(rows)

    def med(est):
        v = sorted(table.loc[table.estimate == est, "test_auc"])
        return float(v[(len(v) - 1) // 2])

    nested, chosen = med("nested"), med("chosen_on_test")
    return {"table": table, "per_candidate": pd.DataFrame(per_cand), "choices": pd.DataFrame(choices),
            "nested": nested, "chosen_on_test": chosen, "optimism": chosen - nested,
            "nested_folds": nested_folds,
            "method": "nested CV (Varma & Simon 2006; Cawley & Talbot 2010): inner patient-level stratified "
                      f"{n_inner}-fold CV on each outer training side picks the candidate"}


def nested_cv_rows(result: dict, what: str) -> pd.DataFrame:
    """The future ``results/nested_cv.csv`` rows for one choice (``what``, e.g. "kernel x patch x layer"):
    ``choice, estimate, test_auc, optimism, chosen``, median repeat."""
    return pd.DataFrame([
        {"choice": what, "estimate": "chosen_on_test", "test_auc": result["chosen_on_test"],
         "optimism": result["optimism"],
         "chosen": result["table"].query("estimate == 'chosen_on_test'")["chosen"].iloc[0]},
        {"choice": what, "estimate": "nested", "test_auc": result["nested"], "optimism": 0.0,
         "chosen": result["table"].query("estimate == 'nested'")["chosen"].iloc[0]},
    ])
