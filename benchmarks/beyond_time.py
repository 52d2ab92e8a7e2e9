"""``python benchmarks/beyond_time.py N_PATIENTS WORK_DIR``: wall time of run_beyond on an
n-patient synthetic cohort (effect 1): real cohort, patch stores, hand-crafted features and statistics;
the grid's training/SVM units are random scores and the deep features random matrices of the real blob widths
(run_beyond's cost depends on patients and widths, the grid computes the real ones anyway)."""
import sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np

DIMS = {"conv1/7x7_s2": 64, "conv2/3x3": 192, "inception_3a/output": 256, "inception_3b/output": 480,
        "inception_4a/output": 512, "inception_4b/output": 512, "inception_4c/output": 512,
        "inception_4d/output": 528, "inception_4e/output": 832, "inception_5a/output": 832,
        "inception_5b/output": 1024, "loss3/classifier": 1000, "fc8": 1000}

def main(n, root):
    from replicate.experiments import grid as ex
    from replicate.experiments.beyond import run_beyond
    from replicate.experiments.protocol import FoldResult
    import torch
    root = Path(root)
    p = replace(ex.get_preset("paper"), name="quick-like", n_repeats=1, n_boot=1000,
                max_train_patches_per_patient=2, max_score_patches_per_patient=1)
    t = time.time()
    stores = ex.synthetic_stores(root, n, 0, effect=1.0, sizes=[80, 120])
    print(n, "cohort+stores", round(time.time() - t, 1), flush=True)

    def unit(self, cell, fold, feats):
        rng = np.random.default_rng(abs(hash((cell.id, fold.repeat, fold.fold))) % 2**32)
        labels = dict(zip(self.patients.patient_id, self.patients.label))
        return FoldResult(fold.repeat, fold.fold, list(fold.test_ids), [labels[i] for i in fold.test_ids],
                          list(rng.normal(size=len(fold.test_ids))), 0.8, {})

    def features(self, cell):
        rows = self.rows(cell.patch_size)
        rng = np.random.default_rng([cell.patch_size, len(cell.network)])
        return {"rows": rows, "blobs": {b: rng.normal(size=(len(rows), d)).astype(np.float32) for b, d in DIMS.items()}}

    ex.Runner.run_unit = unit
    ex.Runner.features = features
    runner = ex.Runner(p, stores, root / "run", torch.device("cpu"), progress=False)
    results = runner.run_all()
    t = time.time()
    md = run_beyond(runner, results, {}, synthetic=True, progress=False)
    print(n, "run_beyond seconds", round(time.time() - t, 1), flush=True)
    print([l for l in md.splitlines() if l.startswith("Compute")][0])
    import pandas as pd
    print(pd.read_csv(root / "run/results/baselines.csv")[["baseline", "classifier", "test_auc", "ci_low", "ci_high"]].to_string())
    t = time.time()
    run_beyond(runner, results, {}, synthetic=True, progress=False)
    print(n, "resumed run_beyond seconds", round(time.time() - t, 1), flush=True)

if __name__ == "__main__":  # run from the checkout root (PYTHONPATH=.)
    main(int(sys.argv[1]), sys.argv[2])
