import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402

#: The shared null synthetic cohort of the run-level tests (11 luminal A, 22 other: enough for 10 stratified folds)
SYNTH_PATIENTS, SYNTH_SEED = 33, 0


@pytest.fixture(scope="session")
def synth_root(request, tmp_path_factory):
    """Folder holding ``cohort/``: a synthetic cohort of 33 patients, effect 0, seed 0, written once into pytest's
    cache (shared by tests/test_run_api.py and tests/test_beyond.py)."""
    from pathlib import Path

    from replicate.cohort.synth import SynthConfig, generate

    cache = getattr(request.config, "cache", None)
    name = f"synth-effect0-{SYNTH_PATIENTS}-{SYNTH_SEED}"
    root = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
    if not (root / "cohort" / "synthetic_truth.csv").exists():
        generate(root / "cohort", SynthConfig(patients=SYNTH_PATIENTS, seed=SYNTH_SEED, effect=0.0), overwrite=True)
    return root
