"""``python -m replicate run --preset smoke|paper [--data DIR] [--out RUN] [--device auto|cpu|cuda]
[--weights-dir D]``: the paper's experiments end to end (Zhu et al. 2019, Tables 3-6, Figures 2-3).

Without ``--data`` the run writes a synthetic cohort (replicate.cohort.synth) into ``RUN/cohort`` and uses it (the smoke
preset's job). The run is resumable: run the same command again after an interruption and finished folds, patch
stores and features are reused. Outputs: see replicate.experiments.report.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from replicate.errors import ConfigError

FIXED_CHOICES = [
    "GoogleNet_R and VGG_R: the scratch_variant setting says which reading was trained (table2 = the nets whose "
    "MACC and parameters match Table 2; text = as the Methods text describes them; docs/deviations.md).",
    "Scratch nets are trained on 80-pixel patches resized to each net's input (the paper does not say which patch "
    "size); transfer learning also uses 80-pixel patches resized to 256 with a random 224 crop.",
    "Batch size 32 (paper preset) and solver momentum/weight decay from prototxt/*/solver.prototxt (paper silent; GUESSes there); "
    "step policy gamma 0.5 every 5 epochs of iterations (Table 2).",
    "Training AUC: patient-level AUC over the fold's training patients, each scored like a test patient (mean over "
    "its 25 scoring patches), averaged over folds of the reported repeat.",
    "95% CI: percentile bootstrap over the reported repeat's patients (stratified by label; each keeps its fold "
    "and out-of-fold score; the fold-averaged AUC is recomputed).",
    "Without --weights-dir, feature nets whose deploy file gives no filler (VGG16) get xavier weights and zero "
    "biases (Caffe would fill zeros, making every feature 0); all such numbers are flagged.",
    "Median over repeats: the repeat whose fold-averaged AUC is the median (lower median for an even count).",
    "SVM: scikit-learn SVC defaults (C=1, gamma='scale', degree 3) on standardised features (paper silent).",
    "Table 6 uses patch 120 and the polynomial kernel (its FC1 column equals Table 5's GoogLeNet 120 poly row).",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["smoke", "paper"], default="smoke")
    parser.add_argument("--data", type=Path, default=None,
                        help="cohort root (Duke-Breast-Cancer-MRI layout); default: a synthetic cohort in RUN/cohort")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<preset>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="folder with bvlc_googlenet.caffemodel and VGG_ILSVRC_16_layers.caffemodel "
                             "(python -m models fetch-weights DIR); default: none, random init (flagged)")
    parser.add_argument("--scratch-nets", choices=["table2", "text"], default=None,
                        help="which reading of GoogleNet_R / VGG_R to train from scratch (docs/deviations.md); "
                             "default table2: the nets matching Table 2's MACC and parameters")
    parser.add_argument("--repeats", type=int, default=None, help="override the preset's number of CV repeats")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples for the 95%% CI")
    parser.add_argument("--seed", type=int, default=None, help="base seed (folds, init, dropout, crops)")
    parser.add_argument("--synth-effect", type=float, default=1.0,
                        help="effect size of the synthetic cohort when --data is not given")
    parser.add_argument("--no-progress", action="store_true")


def code_version() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev, dirty = "", ""
    h = hashlib.sha1()
    for p in sorted((root / "replicate").glob("*.py")) + sorted((root / "models").rglob("*.py")):
        h.update(p.read_bytes())
    src = h.hexdigest()[:12]
    return f"git {rev or 'none (no commit)'}{' + uncommitted changes' if dirty else ''}; source SHA1 {src}"


def _stores(cohort_root: Path, sizes, cache: Path, progress: bool) -> dict:
    from replicate.cohort.patches import PatchConfig, PatchStore

    return {s: PatchStore.build(cohort_root, PatchConfig(patch_size=s), cache, progress=progress)
            for s in sorted(set(sizes))}


def cohort_provenance(store) -> dict:
    out = {}
    try:
        flow = store.cohort.flow()
        out["flow"] = [" | ".join(f"{k}: {v}" for k, v in row.items()) for row in flow.to_dict("records")]
    except Exception as exc:  # the flow is informative only; never fail a finished run over it
        out["flow"] = [f"(exclusion flow unavailable: {exc})"]
    pts = store.patients
    out["included patients"] = int(len(pts))
    out["luminal A"] = int(pts["label"].sum())
    out["other subtypes"] = int((pts["label"] == 0).sum())
    out["patches per patient (train / scoring), median"] = (
        f"{int(pts['n_train'].median())} / {int(pts['n_test'].median())}" if "n_train" in pts else "—")
    out["patch store key"] = store.key
    return out


def main(args: argparse.Namespace) -> int:
    import torch

    from replicate.experiments import grid as ex
    from replicate.experiments import report
    from replicate.experiments.training import resolve_device

    t0 = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    preset = ex.get_preset(args.preset)
    if args.repeats is not None:
        preset = replace(preset, n_repeats=args.repeats)
    if args.scratch_nets is not None:
        preset = replace(preset, scratch_variant=args.scratch_nets)
    if args.n_boot is not None:
        preset = replace(preset, n_boot=args.n_boot)
    if args.seed is not None:
        preset = replace(preset, seed=args.seed)
    if preset.n_repeats < 1 or preset.n_boot < 10:
        raise ConfigError("--repeats must be >= 1 and --n-boot >= 10")
    run_dir = args.out or Path("runs") / preset.name
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    progress = not args.no_progress
    if args.weights_dir is not None and not args.weights_dir.is_dir():
        raise ConfigError(f"--weights-dir {args.weights_dir}: not a folder")

    # cohort
    if args.data is None:
        from replicate.cohort.synth import SynthConfig, generate

        cohort_root = run_dir / "cohort"
        if not (cohort_root / "synthetic_truth.csv").exists():
            n = preset.synth.get("n_patients", 270)
            print(f"writing a synthetic cohort of {n} patients to {cohort_root}", file=sys.stderr)
            generate(cohort_root, SynthConfig(patients=n, seed=preset.synth.get("seed", 0),
                                              effect=args.synth_effect), overwrite=True, progress=progress)
        cohort_desc = f"synthetic (replicate.cohort.synth, effect {args.synth_effect}, seed {preset.synth.get('seed', 0)})"
    else:
        cohort_root = args.data
        if not cohort_root.is_dir():
            raise ConfigError(f"--data {cohort_root}: not a folder")
        cohort_desc = str(cohort_root.resolve())
    sizes = {preset.scratch_patch_size, preset.transfer_patch_size, preset.table6_patch_size,
             *preset.feature_patch_sizes}
    t_c = time.time()
    stores = _stores(cohort_root, sizes, run_dir / "patches", progress)
    t_stores = time.time() - t_c

    runner = ex.Runner(preset, stores, run_dir, device, weights_dir=args.weights_dir, progress=progress)
    results = runner.run_all()
    summ = ex.summaries(preset, results)

    flags = {}
    weights = []
    for net in ex.IMAGENET_NETS:
        if args.weights_dir is None:
            weights.append({"network": net, "file": None, "sha1": None,
                            "status": ex.NO_WEIGHTS_FLAG + " (Caffe fillers, seeded)"})
        else:
            spec = ex.imagenet_spec(net, args.weights_dir, transfer=False)
            weights.append({"network": net, "file": str(spec.weights), "sha1": ex.weights_id(spec),
                            "status": "ImageNet caffemodel"})
    if args.weights_dir is None:
        for c in ex.unique_cells(preset):
            if c.approach in ("transfer", "features"):
                flags[c.id] = ex.NO_WEIGHTS_FLAG
    if args.weights_dir is not None:
        from models.fetch import PROVENANCE

        fetched = args.weights_dir / PROVENANCE
        if fetched.exists():  # where the files came from (python -m models fetch-weights)
            import json

            by_name = {r["file"]: r for r in json.loads(fetched.read_text())["weights"]}
            for w in weights:
                rec = by_name.get(Path(w["file"]).name)
                if rec:
                    w["status"] += f"; fetched from {rec['url']} ({rec['checksum']})"
    first = stores[sorted(stores)[0]]
    prov = {
        "preset": preset.name, "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds_this_invocation": round(time.time() - t0, 1), "code_version": code_version(),
        "device": f"{device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__, "python": platform.python_version(), "seed": preset.seed,
        "n_folds": preset.n_folds, "n_repeats": preset.n_repeats, "n_boot": preset.n_boot,
        "cohort": {"source": cohort_desc, **cohort_provenance(first)},
        "weights": weights,
        "no_pretrained_weights": ex.NO_WEIGHTS_FLAG if args.weights_dir is None else "",
        "differences": preset.differences(), "fixed_choices": FIXED_CHOICES,
        "timings": {"patch stores": t_stores, **runner.timings},
        "argv": sys.argv,
    }
    report.write_all(run_dir, preset, ex.cells(preset), results, summ, flags, prov)
    print(f"done in {time.time() - t0:.0f} s: {run_dir / 'report.md'}")
    return 0
