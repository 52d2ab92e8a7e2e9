"""The code identity of a unit of work: which source files compute each kind of unit, and their digest.

A unit's resume key (:meth:`replicate.experiments.grid.Runner.unit_key`, the feature cache's key, a "beyond" step's
key) ends in ``code=<package version>+<SHA1>``, the SHA1 taken over the source files listed here for that unit's
kind and nothing else. Editing the report, the plan, the CLI, an executor or an analysis that does not feed the
unit leaves its key, and therefore its stored result, in place; editing a listed file recomputes exactly the units
whose kind lists it.

The lists are written out rather than derived at run time, so that what a key covers can be read here; a module
left out would let a stale result be read back silently, so ``tests/test_unit_code.py`` follows the imports and
calls of each kind's unit functions (``Runner.run_unit``, ``Runner.features``, ``dispatch.grid_unit``,
``TrainedCandidate.result``, ``beyond.run_beyond``) and fails when one of them reaches a ``replicate`` or ``models`` module its list lacks.

Entries are dotted module names. A name ending in ``.*`` stands for the package and every module under it; any
other name stands for that one file (a package's ``__init__.py``; importing a module runs its parents' ones).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from replicate.experiments.runstate import package_version

#: Packages whose ``__init__.py`` runs when any unit module is imported.
PACKAGE_INITS = ("replicate", "replicate.experiments", "replicate.cohort")
#: The cohort preprocessing a unit's patches came from (the patch store and what it imports at module level).
COHORT_PREPROCESSING = ("replicate.cohort.patches", "replicate.cohort.preprocess", "replicate.cohort.duke",
                        "replicate.cohort.dicom_io", "replicate.cohort.series_patterns")
#: Every unit: the runner that builds a unit's folds and net spec (grid: ``Runner``, ``scratch_spec``, ...), the
#: protocol, the trainer and data pipeline (training), errors, the run state, this module (the lists are part of
#: the key), and the whole Caffe layer (``models``: layers, solvers, converter).
_COMMON = PACKAGE_INITS + COHORT_PREPROCESSING + (
    "replicate.errors", "replicate.experiments.grid", "replicate.experiments.protocol",
    "replicate.experiments.runstate", "replicate.experiments.training", "replicate.experiments.unit_code",
    "models.*")
#: A deep-feature cache entry: one forward pass of an ImageNet net (``Runner.features`` ->
#: ``features.cached_features``).
_EXTRACT = _COMMON + ("replicate.experiments.features",)
#: A fold of a cell (``Runner.run_unit``): one function trains the net of a scratch / transfer cell or fits the SVM
#: of a deep-feature cell, so both kinds list both approaches; an SVM fold also reads the extracted features.
_FOLD = _EXTRACT + ("replicate.experiments.svm", "replicate.experiments.svm_linear")
#: A trained-net split of the "beyond" analyses that is not a grid fold (``trainedcv.TrainedCandidate.result``):
#: a fold's code plus the module that turns the split into a Fold and its seed, and what that module imports at
#: module level (nested_cv's inner-fold count, which imports featurecv).
_SPLIT = _FOLD + ("replicate.experiments.trainedcv", "replicate.experiments.nested_cv",
                  "replicate.experiments.featurecv")
#: A "beyond the paper" step (``beyond.run_beyond``): SVM / logistic refits on the cached features and the grid's
#: scores. ``replicate.experiments.report`` is not listed: the steps use only its file writers (``write_csv``,
#: ``_savefig``), which format the files, not the numbers in them.
_BEYOND = _FOLD + ("replicate.cohort.handcrafted", "replicate.experiments.beyond", "replicate.experiments.baselines",
                   "replicate.experiments.featurecv", "replicate.experiments.learning_curve",
                   "replicate.experiments.nested_cv", "replicate.experiments.paired",
                   "replicate.experiments.permutation", "replicate.experiments.svm_units",
                   "replicate.experiments.trainedcv")

#: What counts as source inside a ``pkg.*`` entry: Python and the Caffe schema (models compiles ``caffe.proto`` at
#: first use, so an edit to it changes how every prototxt is read).
SOURCE_SUFFIXES = (".py", ".proto")

#: Unit kind -> the modules whose source is its code identity.
UNIT_CODE: dict[str, tuple[str, ...]] = {"train": _FOLD, "svm": _FOLD, "extract": _EXTRACT, "split": _SPLIT,
                                         "beyond": _BEYOND}


def unit_kind(approach: str) -> str:
    """The kind of a grid cell's fold: ``"svm"`` for a deep-feature cell (Tables 5-6), ``"train"`` for a scratch
    or transfer cell (Tables 3-4, Figure 2). Raises KeyError for another approach."""
    return {"features": "svm", "scratch": "train", "transfer": "train"}[approach]


def module_files(name: str) -> dict[str, Path]:
    """The source files of a :data:`UNIT_CODE` entry (``pkg.*``: every :data:`SOURCE_SUFFIXES` file under the
    package; else the one
    module's file), read from wherever it is imported (checkout or installed wheel), by their path from the
    top-level package's parent (``replicate/experiments/grid.py``), so that both give the same digest. A name that
    cannot be found gives no files."""
    whole = name.endswith(".*")
    spec = importlib.util.find_spec(name[:-2] if whole else name)
    top = importlib.util.find_spec(name.split(".")[0])
    if spec is None or spec.origin is None or top is None or top.origin is None:
        return {}
    origin, root = Path(spec.origin), Path(top.origin).parent.parent
    files = sorted(f for ext in SOURCE_SUFFIXES for f in origin.parent.rglob(f"*{ext}")) if whole else [origin]
    return {f.relative_to(root).as_posix(): f for f in files}


def file_digest(path: Path) -> str:
    """SHA1 (hex) of one source file's bytes."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def code_id(kind: str) -> str:
    """``<package version>+<SHA1, 12 hex digits>`` of the files of ``UNIT_CODE[kind]`` (each file once, sorted by
    its path inside the package, the path hashed with the file's digest). Computed once per process and kind.

    Raises
    ------
    KeyError
        ``kind`` is not a key of :data:`UNIT_CODE`.
    """
    h = hashlib.sha1()
    files = {}
    for name in UNIT_CODE[kind]:
        found = module_files(name)
        if not found:
            h.update(f"{name}:missing\n".encode())
        files.update(found)
    for rel in sorted(files):
        h.update(f"{rel}\0{file_digest(files[rel])}\n".encode())
    return f"{package_version()}+{h.hexdigest()[:12]}"
