"""``replicate.run(config) -> RunResult``: one function that assembles a run of the paper's experiments
(Zhu et al. 2019, Tables 3-6, Figures 2-3): cohort (synthetic unless ``data`` is given), patch stores, the grid of
cells under the protocol, flags, provenance and the report. ``python -m replicate run`` only parses its arguments
into a :class:`RunConfig` and prints; the tests call the same function.

The run is resumable: call it again with the same configuration after an interruption and finished folds, patch
stores and features are reused (replicate.experiments.runstate). Outputs: see replicate.experiments.report.

Errors the user can cause (a bad preset, a missing folder, bad numbers) raise
:class:`replicate.errors.ConfigError`.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from replicate.errors import ConfigError

FIXED_CHOICES = [
    "GoogleNet_R and VGG_R: the scratch_variant setting says which reading was trained (table2 = the nets whose "
    "MACC and parameters match Table 2; text = as the Methods text describes them; docs/deviations.md).",
    "Scratch nets are trained on 80-pixel patches resized to each net's input (the paper does not say which patch "
    "size); transfer learning also uses 80-pixel patches resized to 256 with a random 224 crop.",
    "Batch size from each train_val.prototxt's TRAIN data layer (32, paper silent) unless the preset overrides it; "
    "base_lr, gamma, momentum and weight decay from each solver.prototxt (momentum/weight decay are GUESSes there); "
    "step policy: lr x gamma every step_epochs epochs of iterations (Table 2).",
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


@dataclass
class RunConfig:
    """What to run. ``preset``: ``"smoke"`` | ``"paper"`` (replicate.experiments.grid.PRESETS) or a Preset.

    ``data``: a cohort root in the Duke-Breast-Cancer-MRI layout; None = a synthetic cohort written into
    ``out/cohort`` (effect size ``synth_effect``). ``out``: the run folder (default ``runs/<preset>``).
    ``device``: ``auto`` | ``cpu`` | ``cuda``. ``weights_dir``: folder with the ImageNet caffemodels
    (``python -m models fetch-weights DIR``); None = random init, flagged. ``scratch_nets``: ``table2`` | ``text``
    (which reading of GoogleNet_R / VGG_R). ``repeats``, ``n_boot``, ``seed``: override the preset's.
    ``patch_cache``: where the patch stores live (default ``out/patches``; stores are keyed by their
    configuration, so runs may share one)."""

    preset: object = "quick"
    data: Path | None = None
    out: Path | None = None
    device: str = "auto"
    weights_dir: Path | None = None
    scratch_nets: str | None = None
    repeats: int | None = None
    n_boot: int | None = None
    seed: int | None = None
    synth_effect: float = 1.0
    patch_cache: Path | None = None
    progress: bool = True
    argv: list = field(default_factory=list)
    executor: str = "local"                # "local" | "ray": where the grid's units run (experiments.dispatch)
    ray_address: str | None = None         # a running Ray cluster; None with executor "ray": start a local one
    unit_threads: int | None = None        # torch threads per unit (both executors); None: this process's count
    clinical: Path | None = None      # Clinical_and_Other_Features.xlsx when not found near ``data``
    boxes: Path | None = None         # Annotation_Boxes.xlsx when not found near ``data``
    paper_sized: int = 0              # R > 0: R stratified subsets of paper_sized_n patients (cheap cells only)
    paper_sized_n: tuple = (270, 90)  # (patients, luminal A) of each subset
    beyond_trained: bool = False      # also run the trained-net "beyond" analyses (trainedcv) whatever the preset


@dataclass
class RunResult:
    """A finished run: its folder, the preset actually run, every cell's fold results and protocol summary, the
    side-by-side tables (name -> DataFrame, as written to ``run_dir/results``), the patch stores (patch size ->
    PatchStore), and the provenance written to provenance.json."""

    run_dir: Path
    report: Path
    preset: object
    results: dict
    summaries: dict
    tables: dict
    flags: dict
    stores: dict
    provenance: dict
    seconds: float


def resolve_preset(config: RunConfig):
    """The preset with the config's overrides applied; raises ConfigError for bad values."""
    from replicate.experiments import grid as ex

    preset = config.preset if isinstance(config.preset, ex.Preset) else ex.get_preset(str(config.preset))
    if config.repeats is not None:
        preset = replace(preset, n_repeats=config.repeats)
    if config.scratch_nets is not None:
        if config.scratch_nets not in ex.SCRATCH_NETS:
            raise ConfigError(f"--scratch-nets {config.scratch_nets!r}: expected one of {sorted(ex.SCRATCH_NETS)}")
        preset = replace(preset, scratch_variant=config.scratch_nets)
    if config.n_boot is not None:
        preset = replace(preset, n_boot=config.n_boot)
    if config.seed is not None:
        preset = replace(preset, seed=config.seed)
    if preset.n_repeats < 1 or preset.n_boot < 10:
        raise ConfigError("--repeats must be >= 1 and --n-boot >= 10")
    return preset


def code_version() -> str:
    """git revision (when run from a checkout), the package version and a SHA1 of the package's source."""
    from replicate.experiments.runstate import package_version, source_hash

    root = Path(__file__).resolve().parents[2]
    rev, dirty = "", ""
    if (root / ".git").exists():
        try:
            rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            rev, dirty = "", ""
    src = source_hash(["replicate", "models"])
    return (f"git {rev or 'none (no checkout)'}{' + uncommitted changes' if dirty else ''}; "
            f"package {package_version()}; source SHA1 {src}")


def _stores(cohort_root: Path, sizes, cache: Path, progress: bool, test_patches: str = "box_corners",
            clinical=None, boxes=None) -> dict:
    from replicate.cohort.patches import PatchConfig, PatchStore

    files = {"clinical_file": str(clinical) if clinical else None, "boxes_file": str(boxes) if boxes else None}
    return {s: PatchStore.build(cohort_root, PatchConfig(patch_size=s, test_patches=test_patches, **files), cache,
                                progress=progress)
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


def prepare_cohort(config: RunConfig, preset, run_dir: Path) -> tuple[Path, str]:
    """The cohort root and its description: ``config.data`` or a synthetic cohort in ``run_dir/cohort``."""
    if config.data is None:
        from replicate.cohort.synth import SynthConfig, generate

        cohort_root = run_dir / "cohort"
        seed = preset.synth.get("seed", 0)
        if not (cohort_root / "synthetic_truth.csv").exists():
            n = preset.synth.get("n_patients", 270)
            if config.progress:
                print(f"writing a synthetic cohort of {n} patients to {cohort_root}", file=sys.stderr)
            generate(cohort_root, SynthConfig(patients=n, seed=seed, effect=config.synth_effect), overwrite=True,
                     progress=config.progress)
        return cohort_root, f"synthetic (replicate.cohort.synth, effect {config.synth_effect}, seed {seed})"
    cohort_root = Path(config.data)
    if not cohort_root.is_dir():
        raise ConfigError(f"--data {cohort_root}: not a folder")
    return cohort_root, str(cohort_root.resolve())


def run(config: RunConfig | None = None, **kwargs) -> RunResult:
    """Run the paper's experiments as ``config`` (or RunConfig(**kwargs)) says and write the run folder.

    Returns a :class:`RunResult`. Raises :class:`replicate.errors.ConfigError` for bad settings and the cohort's
    own errors (:class:`replicate.errors.CohortError`, ...) for a bad cohort."""
    import torch

    from replicate.experiments import dispatch, report
    from replicate.experiments import grid as ex
    from replicate.experiments.training import resolve_device

    if config is None:
        config = RunConfig(**kwargs)
    elif kwargs:
        config = replace(config, **kwargs)
    t0 = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    device = resolve_device(config.device)
    preset = ex.for_device(resolve_preset(config), device.type)   # quick on CUDA: the paper's scratch schedule
    executor = dispatch.start(config, preset)   # plan headline; ConfigError for ray without the package
    run_dir = Path(config.out) if config.out is not None else Path("runs") / preset.name
    run_dir.mkdir(parents=True, exist_ok=True)
    weights_dir = Path(config.weights_dir) if config.weights_dir is not None else None
    if weights_dir is not None and not weights_dir.is_dir():
        raise ConfigError(f"--weights-dir {weights_dir}: not a folder")

    cohort_root, cohort_desc = prepare_cohort(config, preset, run_dir)
    sizes = {preset.scratch_patch_size, preset.transfer_patch_size, preset.table6_patch_size,
             *preset.feature_patch_sizes}
    t_c = time.time()
    cache = Path(config.patch_cache) if config.patch_cache is not None else run_dir / "patches"
    stores = _stores(cohort_root, sizes, cache, config.progress, preset.test_patches, config.clinical, config.boxes)
    t_stores = time.time() - t_c

    runner = ex.Runner(preset, stores, run_dir, device, weights_dir=weights_dir, progress=config.progress)
    from replicate.experiments import verdict_run  # issue 10 phase 2: controls, paper-sized subsets, cohort

    if preset.controls and config.data is None:   # the controls' rule and required routes, before any result
        verdict_run.write_control_rule(run_dir, verdict_run.control_rule(preset, runner, device))
    try:
        results = dispatch.run_grid(runner, executor, threads=config.unit_threads)
    finally:
        dispatch.finish(executor)
    summ = ex.summaries(preset, results)
    extras = verdict_run.extras(config, preset, run_dir, device, weights_dir, runner, results, summ, stores)

    flags, weights = {}, []
    for net in ex.IMAGENET_NETS:
        if weights_dir is None:
            weights.append({"network": net, "file": None, "sha1": None,
                            "status": ex.NO_WEIGHTS_FLAG + " (Caffe fillers, seeded)"})
        else:
            spec = ex.imagenet_spec(net, weights_dir, transfer=False)
            weights.append({"network": net, "file": str(spec.weights), "sha1": ex.weights_id(spec),
                            "status": "ImageNet caffemodel"})
    if weights_dir is None:
        for c in ex.unique_cells(preset):
            if c.approach in ("transfer", "features"):
                flags[c.id] = ex.NO_WEIGHTS_FLAG
    else:
        from models.fetch import PROVENANCE

        fetched = weights_dir / PROVENANCE
        if fetched.exists():  # where the files came from (python -m models fetch-weights)
            by_name = {r["file"]: r for r in json.loads(fetched.read_text())["weights"]}
            for w in weights:
                rec = by_name.get(Path(w["file"]).name)
                if rec:
                    w["status"] += f"; fetched from {rec['url']} ({rec['checksum']})"
    first = stores[sorted(stores)[0]]
    dev_name = (torch.cuda.get_device_name(0) if device.type == "cuda"
                else platform.processor() or platform.machine())
    prov = {
        "preset": preset.name, "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds_this_invocation": round(time.time() - t0, 1), "code_version": code_version(),
        "device": f"{device} ({dev_name}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "python": platform.python_version(), "seed": preset.seed,
        "n_folds": preset.n_folds, "n_repeats": preset.n_repeats, "n_boot": preset.n_boot,
        "cohort": {"source": cohort_desc, **cohort_provenance(first)},
        "weights": weights,
        "no_pretrained_weights": ex.NO_WEIGHTS_FLAG if weights_dir is None else "",
        "differences": preset.differences(), "overrides": ex.overrides(preset), "fixed_choices": FIXED_CHOICES,
        "timings": {"patch stores": t_stores, **runner.timings},
        "argv": list(config.argv) or sys.argv,
        "readings": ex.readings(preset), "cells_run": sorted(results), "synthetic": config.data is None,
        "scratch_variant": preset.scratch_variant,
    }
    tables = report.write_all(run_dir, preset, ex.cells(preset), results, summ, flags, prov)
    if preset.beyond or config.beyond_trained:  # "Beyond the paper" (issue 12): on the grid's scores and features
        from replicate.experiments.beyond import run_beyond

        # --beyond-trained is passed, not written into the preset: the preset hash keys every grid unit, and turning
        # the trained-net analyses on must not make a finished grid retrain
        report.insert_section(run_dir, run_beyond(runner, results, flags, config.data is None, config.progress,
                                                       provenance=prov,
                                                       trained=preset.beyond_trained or config.beyond_trained))
    # this invocation up to here (grid, controls, beyond; the verdict sections are seconds): the summary's wall time
    prov["wall_seconds_total"] = round(time.time() - t0, 1)
    prov["finished_total_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    from replicate.experiments.runstate import atomic_write_json

    atomic_write_json(run_dir / "provenance.json", prov)
    verdict_run.finish(run_dir, extras)
    return RunResult(run_dir=run_dir, report=run_dir / "report.md", preset=preset, results=results,
                     summaries=summ, tables=tables, flags=flags, stores=stores, provenance=prov, seconds=time.time() - t0)
