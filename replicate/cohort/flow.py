"""Our cohort beside the paper's: the exclusion flow step by step, and paper-sized random subsets.

Zhu et al. 2019, "Patient Population": 400 consecutive patients -> 286 (clinical exclusions) -> 275 (cases the
readers skipped) -> 270 (image-processing problems, implants, a missing post-contrast series); 90 of the 270 are
luminal A. The public collection (922 patients, one box each) carries none of the clinical history the first step
used, has its dates shifted, and was annotated for every patient, so only some steps can be reproduced.

This module never holds the paper's numbers (they live in ``compare/``): :func:`flow_beside_paper` takes the
paper's steps as a parameter, and :func:`paper_sized_subsets` takes the subset size and class counts as
settings. What it knows is which of the paper's reasons the public data can check (:data:`REASON_RULES`, keyed by
words of the reason, not by counts).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from replicate.errors import CohortError, ConfigError

#: The paper's exclusion reasons (matched by regular expression on the reason text, case-insensitive) -> (our
#: reasons that implement the same check, reproducible from the public collection?, why).
REASON_RULES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    (r"consecutive|collected|patients? (at|from)|^start",
     ("patients found",), False,
     ("the public collection is larger and its dates are shifted; the paper's consecutive patients of one "
      "period cannot be selected from it")),
    (r"previous history of breast cancer", (), False,
     "clinical history is not among the columns the loader reads; not checkable here"),
    (r"benign|elective", (), False, "surgical history is not among the columns the loader reads"),
    (r"undergoing|treatment at the time", (), False,
     "treatment status at the time of MRI is not among the columns the loader reads"),
    (r"pathology", ("missing label",), True, "receptor codes missing in Clinical_and_Other_Features.xlsx"),
    (r"no biopsy", ("missing label",), False,
     "biopsy status is not recorded separately; a patient without receptor codes is excluded as 'missing label'"),
    (r"discordant", ("discordant slice count",), True, "slice counts of pre- and post-contrast series compared"),
    (r"missing (the )?post-contrast", ("missing phase",), True, "series found by SeriesDescription"),
    (r"missing sequence", ("missing phase",), True, "series found by SeriesDescription"),
    (r"skipped|reader", ("no annotation box",), False,
     ("the public Annotation_Boxes.xlsx has a box for every patient; which cases the paper's readers skipped is "
      "not published")),
    (r"implant", (), False, "implants are not recorded in the columns the loader reads"),
    (r"image processing|processing error", ("processing error", "unreadable file", "bad geometry",
                                            "pre/post grid differs", "phase order", "box outside the volume"),
     True, "our own image-processing failures; which cases failed for the paper is not published"),
)


def _rule(reason: str):
    for pattern, ours, ok, why in REASON_RULES:
        if re.search(pattern, reason, flags=re.IGNORECASE):
            return ours, ok, why
    return (), False, "no rule for this reason"


def flow_beside_paper(our_flow: pd.DataFrame, paper_steps: Iterable[Mapping]) -> pd.DataFrame:
    """The paper's flow, step by step, beside ours.

    ``our_flow``: :meth:`replicate.cohort.duke.Cohort.flow` (columns step, stage, reason, count).
    ``paper_steps``: the paper's steps in order, each a mapping with ``reason`` (text) and ``count`` (patients),
    and optionally ``step`` ("start" | "excluded" | "remaining"; default "excluded"); the caller takes them from
    ``compare/`` (the paper's numbers are data there).

    Returns one row per paper step: ``paper_step``, ``paper_reason``, ``paper_count``, ``our_reasons`` (our flow's
    reasons that do the same check, "; "-joined), ``our_count`` (their summed count in our flow, our patients found
    for a "start" step, our final included count for the paper's last step; NaN when there is none),
    ``reproducible`` (bool: can this step be reproduced from the public collection) and ``why``. "remaining"
    steps are reproducible when every exclusion before them is."""
    ours = our_flow.copy()
    steps = list(paper_steps)
    final = ours[ours.step == "remaining"]["count"]
    rows = []
    all_before = True
    for i, st in enumerate(steps):
        kind = str(st.get("step", "excluded"))
        reason = str(st["reason"])
        count = int(st["count"])
        if kind == "remaining":
            last = i == len(steps) - 1 and len(final)
            rows.append({"paper_step": kind, "paper_reason": reason, "paper_count": count,
                         "our_reasons": "included" if last else "",
                         "our_count": float(final.iloc[-1]) if last else np.nan, "reproducible": all_before,
                         "why": "every exclusion before it is reproducible" if all_before else
                                "an exclusion before it cannot be reproduced from the public data"})
            continue
        our_reasons, ok, why = _rule(reason)
        if kind == "start":
            n = ours.loc[ours.step == "found", "count"]
            our_count = float(n.iloc[0]) if len(n) else np.nan
        else:
            hit = ours[(ours.step == "excluded") & ours.reason.isin(our_reasons)]
            our_count = float(hit["count"].sum()) if our_reasons else np.nan
        all_before = all_before and ok
        rows.append({"paper_step": kind, "paper_reason": reason, "paper_count": count,
                     "our_reasons": "; ".join(our_reasons), "our_count": our_count, "reproducible": bool(ok),
                     "why": why})
    return pd.DataFrame(rows, columns=["paper_step", "paper_reason", "paper_count", "our_reasons", "our_count",
                                       "reproducible", "why"])


def _eligible(cohort_or_patients) -> pd.DataFrame:
    if isinstance(cohort_or_patients, pd.DataFrame):
        df = cohort_or_patients
        for col in ("patient_id", "label"):
            if col not in df.columns:
                raise ConfigError(f"paper-sized subsets: patient table lacks column {col!r}")
        if "status" in df.columns:
            df = df[df.status == "included"]
        return pd.DataFrame({"patient_id": df.patient_id.astype(str), "label": df.label.astype(int)})
    recs = cohort_or_patients.included
    return pd.DataFrame({"patient_id": [r.patient_id for r in recs], "label": [int(r.label) for r in recs]})


def paper_sized_subsets(cohort_or_patients, n: int = 270, n_pos: int = 90, draws: int = 10, seed: int = 0
                        ) -> list[tuple[str, ...]]:
    """``draws`` stratified random subsets of the eligible (included) patients, each with ``n_pos`` luminal A and
    ``n - n_pos`` other patients drawn without replacement (simple random sampling within each class).

    ``cohort_or_patients``: a :class:`replicate.cohort.duke.Cohort` (its included patients) or a table with
    ``patient_id`` and ``label`` (and optionally ``status``: only "included" rows are used), e.g.
    ``PatchStore.patients``. Defaults are the paper's sizes as the issue states them (270 patients, 90 luminal A);
    the caller passes the values it compares with. Deterministic for a seed and the same patient set, whatever the
    row order. Returns one sorted tuple of patient ids per draw.

    Raises ConfigError when a class has fewer patients than asked or the settings are out of range."""
    if draws < 1:
        raise ConfigError(f"paper-sized subsets: draws must be >= 1, got {draws}")
    if not 0 < n_pos < n:
        raise ConfigError(f"paper-sized subsets: need 0 < n_pos < n, got n={n}, n_pos={n_pos}")
    df = _eligible(cohort_or_patients).sort_values("patient_id")
    pos = df.patient_id[df.label == 1].to_numpy()
    neg = df.patient_id[df.label == 0].to_numpy()
    if len(pos) < n_pos or len(neg) < n - n_pos:
        raise CohortError(f"paper-sized subsets of {n} ({n_pos} luminal A, {n - n_pos} other): the eligible cohort "
                          f"has {len(pos)} luminal A and {len(neg)} other")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        pick = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])
        out.append(tuple(sorted(map(str, pick))))
    return out
