"""The paper's three approaches under its protocol, as a grid of cells (Zhu et al. 2019, Tables 3-6, Figures 2-3).

A *cell* is one number of one table (e.g. Table 5, GoogLeNet, patch 120, poly). Each cell is evaluated by
patient-level stratified 10-fold CV repeated ``n_repeats`` times (replicate.experiments.protocol); the unit of work, stored
atomically and skipped on resume, is one (cell, repeat, fold).

- Table 3 / Figure 2 row 1: training from scratch, four nets from ``prototxt/``, lr sweep on VGG_R.
- Table 4 / Figure 2 row 2: transfer learning from ImageNet GoogLeNet and VGG16, sweep of the last layer's lr.
- Table 5 / Table 6 / Figure 3: deep features + SVM; features cached per (net, weights, patches, blob).

Presets: ``paper`` is the full grid; ``smoke`` keeps the protocol's structure (10 stratified patient-level folds,
every table cell) but shrinks the cohort, epochs, repeats and per-patient patch counts so it finishes in minutes
on 2 CPU cores. Every difference is listed by :meth:`Preset.differences` and printed in the report.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.errors import ConfigError, ReplicateError
from replicate.experiments import unit_code
from replicate.experiments.protocol import FoldResult, patient_folds, repeat_seed, summarise
from replicate.experiments.runstate import RunState

from models.resources import nets_dir
NO_WEIGHTS_FLAG = "no pretrained weights: not comparable to the paper"

#: Table 3 rows -> prototxt folder, per reading of the reduced nets (docs/deviations.md, "Which to train"):
#: "table2" = the nets whose MACC/params match Table 2 exactly (prototxt/*_table2), "text" = the nets as the
#: Methods text describes them (VGG_R then has 436M parameters, 1375x Table 2's).
SCRATCH_NETS = {
    "table2": {"GoogleNet": "googlenet", "GoogleNet_R": "googlenet_r_table2", "VGGNet_R": "vgg_r_table2",
               "CIFAR": "cifar"},
    "text": {"GoogleNet": "googlenet", "GoogleNet_R": "googlenet_r", "VGGNet_R": "vgg_r", "CIFAR": "cifar"},
}
#: ImageNet nets: row name -> (transfer prototxt folder, 1000-way feature folder, caffemodel, new 2-way layer)
IMAGENET_NETS = {
    "GoogleNet": ("googlenet_transfer", "googlenet_imagenet", "bvlc_googlenet.caffemodel",
                  ("loss3/classifier_2way", "loss1/classifier_2way", "loss2/classifier_2way")),
    "VGGNet": ("vgg16", "vgg16_imagenet", "VGG_ILSVRC_16_layers.caffemodel", ("fc8_2way",)),
}
#: The deep-feature cells this grid runs (network, patch size, SVM kernel): the experiments' own list. The report
#: joins each cell to the paper's Table 5 row with the same key (compare.paper.TABLE_KEYS), not by position.
FEATURE_SETTINGS = [("GoogleNet", 80, "poly"), ("GoogleNet", 120, "rbf"), ("GoogleNet", 120, "poly"),
               ("GoogleNet", 120, "linear"), ("VGGNet", 80, "poly"), ("VGGNet", 120, "poly")]
#: The GoogLeNet blobs whose features the layer-by-layer cells use (patch ``table6_patch_size``, kernel
#: ``table6_kernel``); joined to the paper's Table 6 columns by blob name.
LAYER_BLOBS = ["conv1/7x7_s2", "conv2/3x3", "inception_3a/output", "inception_3b/output", "inception_4a/output",
                "inception_4b/output", "inception_4c/output", "inception_4d/output", "inception_4e/output",
                "inception_5a/output", "inception_5b/output", "loss3/classifier"]
RANDOM_INIT = "fillers+xavier-default"  # how nets are initialised without --weights-dir (in every cache key)
FEATURE_BATCH = 32  # forward batch for feature extraction (TEST phase: no effect on the features)
DEFAULT_FEATURE_BLOB = {"GoogleNet": "loss3/classifier", "VGGNet": "fc8"}


@dataclass
class Preset:
    """A run's settings. Training facts are stated once: the net files give base_lr, gamma, momentum and weight
    decay (``solver.prototxt``) and the batch size (the TRAIN data layer of ``train_val.prototxt``); the preset gives
    what Caffe's files cannot say in epochs (``*_epochs``, ``step_epochs``) and the experiment grid (sweeps, patch
    sizes, protocol). A preset value of ``None`` means "the net file's value"; a value overriding a file's value is
    listed by :func:`overrides` with the reason from ``why`` (printed in the report)."""

    name: str
    n_folds: int = 10
    n_repeats: int = 5
    n_boot: int = 10_000                  # printed CIs: endpoint Monte-Carlo SE ~0.002 (smoke and quick: 1,000, stated)
    seed: int = 0
    scratch_variant: str = "table2"       # which reading of GoogleNet_R / VGG_R to train (SCRATCH_NETS)
    scratch_patch_size: int = 80          # the paper does not say which patch size trained the scratch nets
    transfer_patch_size: int = 80         # nor which fed transfer learning
    scratch_epochs: int = 40              # paper, "Methods Overview": 40 epochs
    transfer_epochs: int = 40
    step_epochs: int = 5                  # Table 2: lr reduced 50% (solver gamma) after each 5 epochs
    batch_size: int | None = None         # None: train_val.prototxt's batch_size (the paper gives none)
    scratch_lr: float | None = None       # None: solver.prototxt's base_lr (Table 2: 0.0001)
    scratch_lr_sweep: tuple = (0.0001, 0.0005, 0.00002)
    transfer_base_lr: float | None = None  # None: the transfer solver's base_lr
    transfer_last_lr: float = 0.001
    transfer_lr_sweep: tuple = (0.001, 0.005, 0.0002)
    feature_patch_sizes: tuple = (80, 120)
    table6_patch_size: int = 120
    table6_kernel: str = "poly"
    max_iters_per_epoch: dict = field(default_factory=dict)   # net input size -> cap (smoke)
    epochs_by_input: dict = field(default_factory=dict)       # net input size -> epochs (smoke: 224 nets)
    max_train_auc_patients: int | None = None  # smoke: score only this many training patients per class
    max_train_patches_per_patient: int | None = None
    max_score_patches_per_patient: int | None = None
    synth: dict = field(default_factory=lambda: {"n_patients": 270, "seed": 0})  # synthetic cohort, no --data
    why: dict = field(default_factory=dict)  # setting -> why this preset departs from the paper / the net files
    # -- issue 10 phase 2: readings the paper leaves open (docs/deviations.md), the cells run, the controls
    test_patches: str = "box_corners"     # scoring patches: box corners + middle | Caffe oversample crops
    svm_unit: str = "patch"               # SVM training sample: patch | patient | region (svm.fit_score)
    pooling: str = "avg"                  # x-y pooling of spatial feature maps: avg | max (features.pool_xy)
    cell_prefixes: tuple = ()             # () = every cell; else only cells whose id starts with one of these
    controls: dict = field(default_factory=dict)  # {} = none; else positive/negative control cells (quick)
    scratch_patch_caps: bool = True       # False: scratch cells train on and score every patch (no max_*_patches)
    device_overrides: dict = field(default_factory=dict)   # device type -> settings for a run on it (for_device)
    # "Beyond the paper" (replicate.experiments.beyond; issue 12): cheap analyses on cached features after the grid
    beyond: bool = True                   # run them and write the report's "Beyond the paper" section
    n_perm: int = 99                      # permutations of the whole-pipeline permutation test (>= 99)
    learning_curve_sizes: tuple = (50, 100, 200, 270, None)   # cohort sizes (None = every patient)
    learning_curve_draws: int = 5         # stratified random subsets per size
    # trained-net "beyond" analyses (replicate.experiments.trainedcv): nested CV over Figure 2's learning rates and
    # learning curves of trained nets; they retrain nets hundreds of times (paper preset, or run --beyond-trained)
    beyond_trained: bool = False

    def differences(self) -> list[str]:
        """How this preset departs from the paper's protocol (printed in the report)."""
        paper = PRESETS["paper"]
        out = []
        for k, v in asdict(self).items():
            if k in ("name", "synth", "why"):
                continue
            pv = getattr(paper, k)
            if v != pv:
                reason = f": {self.why[k]}" if k in self.why else ""
                was = "the net files' value" if pv is None else repr(pv)
                out.append(f"{k}: {v!r} (paper preset: {was}){reason}")
        return out


def for_device(p: "Preset", device_type: str) -> "Preset":
    """The preset a run on ``device_type`` (``"cpu"`` | ``"cuda"``) uses: ``p`` with ``p.device_overrides[device_type]``
    applied (quick on CUDA: its scratch control net gets the paper's 40 epochs on every patch). Decided from the device
    before the grid runs; every overridden setting is then listed by :meth:`Preset.differences` as usual."""
    from dataclasses import replace

    return replace(p, **p.device_overrides.get(str(device_type), {}))


#: The readings of the paper this preset chose (provenance and the report's deviations section).
READINGS = ("test_patches", "svm_unit", "pooling")


def readings(p: "Preset") -> dict:
    """The reading of each setting the paper leaves open (``READINGS``) this preset uses."""
    return {k: getattr(p, k) for k in READINGS}


_SMOKE_WHY = "the smoke preset finishes in minutes on 2 CPU cores; it checks the pipeline, not the paper's numbers"
PRESETS = {
    "paper": Preset("paper", beyond_trained=True),
    "smoke": Preset(
        "smoke", n_repeats=1, n_boot=1000, scratch_epochs=2, transfer_epochs=2, batch_size=4,
        max_iters_per_epoch={224: 1, 80: 2, 64: 2}, max_train_auc_patients=4,
        max_train_patches_per_patient=2, max_score_patches_per_patient=1,
        synth={"n_patients": 33, "seed": 0}, beyond=False,
        why={k: _SMOKE_WHY for k in ("n_repeats", "scratch_epochs", "transfer_epochs", "batch_size",
                                     "max_iters_per_epoch", "max_train_auc_patients",
                                     "max_train_patches_per_patient", "max_score_patches_per_patient", "beyond",
                                     "beyond_trained")},
    ),
}
_QUICK_WHY = ("the quick preset trains and probes for real on a synthetic cohort sized for the controls' power "
              "(replicate.experiments.power) within 30 minutes on 2 CPU cores; it shows the harness finds a planted "
              "effect, not the paper's numbers")
#: quick: the cells that make the controls meaningful and fit the time. Routes of the controls
#: (replicate.experiments.controls): the deep-features + SVM cell (Table 5, GoogLeNet patch 80 poly), the hand-crafted
#: kinetic baseline (``handcrafted``; computed by the controls on both cohorts) and a from-scratch net: CIFAR, the
#: cheapest Table 3 net (GoogleNet_R costs ~10x per iteration on CPU, measured on a 15-patient cohort; GoogLeNet/VGG16
#: at 224 are not trained on CPU). Chosen by cost before any quick run, never by outcome. Whether the scratch net is
#: *required* is decided by the budget (controls.required_routes, MIN_STEP_SHARE of the paper's SGD steps): on CPU
#: the preset gives CIFAR 8 epochs of 6 patches a patient (~170 steps a fold, 0.3% of the paper's 50,243), where a
#: from-scratch net is measured to end at the class-prior loss (controls.training_diagnostic; issue 10: also for 840
#: steps on one fold, at lr 0.001, and VGG_R for 3 epochs), so there it is trained and reported, not required; on
#: CUDA (``device_overrides``) it trains for the paper's 40 epochs (lr halved every 5) on every patch and is required.
#: Every GoogLeNet deep-feature cell of Tables 5 and 6 runs as well (``QUICK_FEATURE_CELLS``): they share two
#: forward passes (patch 80 and 120) and cost SVM fits only, and they give "Beyond the paper" its paired tests
#: (kernels, layers), nested CV and permutation headline (Table 5's patch 120 poly). VGG16 features (a 224 forward
#: ~10x GoogLeNet's) are left to the paper preset.
QUICK_CONTROL_CELLS = {"required": ["features/GoogleNet/patch=80/kernel=poly/blob=loss3/classifier"],
                       "trained": ["scratch/CIFAR/lr=0.0001/patch=80"],
                       "handcrafted": [("kinetic", "logistic")],
                       "null_effect": 0.0}
QUICK_FEATURE_CELLS = ["features/GoogleNet/"]   # Table 5 GoogLeNet rows and every Table 6 layer
PRESETS["quick"] = Preset(
    "quick", n_repeats=1, n_boot=1000, scratch_epochs=8, step_epochs=3,
    max_train_auc_patients=20, max_train_patches_per_patient=6,
    max_score_patches_per_patient=5,
    synth={"n_patients": 120, "seed": 0},
    cell_prefixes=tuple(QUICK_CONTROL_CELLS["required"] + QUICK_CONTROL_CELLS["trained"] + QUICK_FEATURE_CELLS),
    controls=dict(QUICK_CONTROL_CELLS),
    device_overrides={"cuda": {"scratch_epochs": 40, "step_epochs": 5, "scratch_patch_caps": False}},
    why={**{k: _QUICK_WHY for k in ("n_repeats", "scratch_epochs", "step_epochs", "max_train_auc_patients",
                                     "max_train_patches_per_patient", "max_score_patches_per_patient",
                                     "controls")},
         "device_overrides": "on CUDA the scratch control net trains for the paper's 40 epochs (lr halved every 5 "
                             "epochs, Table 2) on every patch, so the controls require it "
                             "(replicate.experiments.controls.MIN_STEP_SHARE)",
         "cell_prefixes": "only the control cells and the GoogLeNet deep-feature cells of Tables 5-6 run (the paper's "
                          "full grid is the paper preset)",
         "beyond_trained": "nested CV over learning rates and learning curves of trained nets retrain nets hundreds "
                           "of times, beyond the quick preset's 30 minutes (run --beyond-trained turns them on)"},
)


def solver_param(folder: str, name: str):
    """A field of ``prototxt/<folder>/solver.prototxt`` (the one place base_lr, gamma, momentum, weight decay are
    stated)."""

    return getattr(_solver(folder), name)


_SOLVERS: dict = {}


def _solver(folder: str):
    import models

    path = nets_dir() / folder / "solver.prototxt"
    key = (str(path), path.stat().st_mtime_ns if path.exists() else 0)
    if key not in _SOLVERS:
        if not path.exists():
            raise ConfigError(f"{path}: missing (the experiments need the prototxt/ solvers)")
        _SOLVERS[key] = models.read_solver_text(path)
    return _SOLVERS[key]


def scratch_lr(p: "Preset", network: str) -> float:
    return p.scratch_lr if p.scratch_lr is not None else float(
        solver_param(SCRATCH_NETS[p.scratch_variant][network], "base_lr"))


def transfer_base_lr(p: "Preset", network: str) -> float:
    return p.transfer_base_lr if p.transfer_base_lr is not None else float(
        solver_param(IMAGENET_NETS[network][0], "base_lr"))


def batch_size(p: "Preset", spec) -> int:
    if p.batch_size is not None:
        return p.batch_size
    from replicate.experiments.training import data_transform

    return int(data_transform(spec.train_val)["batch_size"])


def overrides(p: "Preset") -> list[str]:
    """Where the preset overrides a value the net files state, and why (printed in the report)."""
    from replicate.experiments.training import data_transform

    out = []
    folders = sorted({SCRATCH_NETS[p.scratch_variant][n] for n in SCRATCH_NETS[p.scratch_variant]}
                     | {IMAGENET_NETS[n][0] for n in IMAGENET_NETS})
    for folder in folders:
        tv = nets_dir() / folder / "train_val.prototxt"
        b = int(data_transform(tv)["batch_size"]) if tv.exists() else None
        if p.batch_size is not None and b is not None and p.batch_size != b:
            out.append(f"{folder}: batch_size {p.batch_size} instead of train_val.prototxt's {b} "
                       f"({p.why.get('batch_size', 'preset setting')})")
        sp = _solver(folder)
        out.append(f"{folder}: solver stepsize/max_iter recomputed per fold as {p.step_epochs} and "
                   f"{p.scratch_epochs if folder not in {v[0] for v in IMAGENET_NETS.values()} else p.transfer_epochs}"
                   f" epochs of that fold's iterations (the file's {sp.stepsize}/{sp.max_iter} assume the paper's "
                   "training-set size and batch 32)")
    if p.scratch_lr is not None:
        out.append(f"scratch base_lr {p.scratch_lr} instead of the solvers' ({p.why.get('scratch_lr', 'preset')})")
    if p.transfer_base_lr is not None:
        out.append(f"transfer base_lr {p.transfer_base_lr} instead of the solvers' "
                   f"({p.why.get('transfer_base_lr', 'preset')})")
    out.append("Figure 2 sweep cells use the sweep's lr instead of the solver's base_lr (scratch) or the new layers' "
               "lr_mult x base_lr (transfer): that is what the sweep varies")
    return out


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]


# --------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One table cell (or sweep point)."""

    table: str        # "table3" | "table4" | "table5" | "table6" | "sweep_scratch" | "sweep_transfer"
    approach: str     # "scratch" | "transfer" | "features"
    network: str
    lr: float | None = None
    patch_size: int | None = None
    kernel: str | None = None
    blob: str | None = None

    @property
    def id(self) -> str:
        parts = [self.approach, self.network]
        if self.lr is not None:
            parts.append(f"lr={self.lr:g}")
        if self.patch_size is not None:
            parts.append(f"patch={self.patch_size}")
        if self.kernel is not None:
            parts.append(f"kernel={self.kernel}")
        if self.blob is not None:
            parts.append(f"blob={self.blob}")
        return "/".join(parts)


def cells(p: Preset) -> dict[str, list[Cell]]:
    """Every cell of every table; cells shared between tables (same id) are computed once."""
    t3 = [Cell("table3", "scratch", n, lr=scratch_lr(p, n), patch_size=p.scratch_patch_size)
          for n in SCRATCH_NETS[p.scratch_variant]]
    s3 = [Cell("sweep_scratch", "scratch", "VGGNet_R", lr=lr, patch_size=p.scratch_patch_size)
          for lr in p.scratch_lr_sweep]
    t4 = [Cell("table4", "transfer", n, lr=p.transfer_last_lr, patch_size=p.transfer_patch_size)
          for n in IMAGENET_NETS]
    s4 = [Cell("sweep_transfer", "transfer", "GoogleNet", lr=lr, patch_size=p.transfer_patch_size)
          for lr in p.transfer_lr_sweep]
    t5 = [Cell("table5", "features", n, patch_size=s, kernel=k, blob=DEFAULT_FEATURE_BLOB[n])
          for n, s, k in FEATURE_SETTINGS]
    t6 = [Cell("table6", "features", "GoogleNet", patch_size=p.table6_patch_size, kernel=p.table6_kernel, blob=b)
          for b in LAYER_BLOBS]
    return {"table3": t3, "sweep_scratch": s3, "table4": t4, "sweep_transfer": s4, "table5": t5, "table6": t6}


def unique_cells(p: Preset) -> list[Cell]:
    """The cells a preset runs (each id once): every cell, or those whose id starts with ``p.cell_prefixes``."""
    seen, out = set(), []
    for cs in cells(p).values():
        for c in cs:
            if p.cell_prefixes and not c.id.startswith(tuple(p.cell_prefixes)):
                continue
            if c.id not in seen:
                seen.add(c.id)
                out.append(c)
    return out


# --------------------------------------------------------------------------------------------- nets
def scratch_spec(network: str, variant: str = "table2"):
    """Table 3 net: train_val (TRAIN), deploy (TEST), solver; input transform from the TRAIN data layer."""
    if variant not in SCRATCH_NETS:
        raise ConfigError(f"scratch net variant {variant!r}: expected one of {sorted(SCRATCH_NETS)}")
    return _spec(network, nets_dir() / SCRATCH_NETS[variant][network], train=True, weights=None, resize=None,
                 new_layers=())


def imagenet_spec(network: str, weights_dir: Path | None, transfer: bool):
    """Table 4 (transfer=True: the 2-way fine-tuning net, resize 256 + random 224 crop) or Tables 5-6 (the 1000-way
    ImageNet deploy net, features only)."""
    tfolder, ffolder, fname, new = IMAGENET_NETS[network]
    w = None
    if weights_dir is not None:
        w = Path(weights_dir) / fname
        if not w.exists():
            raise ConfigError(f"--weights-dir {weights_dir}: {fname} not found (python -m models fetch-weights DIR)")
    if transfer:
        return _spec(network, nets_dir() / tfolder, train=True, weights=w, resize=256, new_layers=new)
    return _spec(network, nets_dir() / ffolder, train=False, weights=w, resize=None, new_layers=())


def _spec(network, folder: Path, train: bool, weights, resize, new_layers):
    from replicate.experiments.training import NetSpec, data_transform

    deploy = folder / "deploy.prototxt"
    size = _input_side(deploy)
    if train:
        tv = folder / "train_val.prototxt"
        if not tv.exists():
            raise ConfigError(f"{tv}: missing (training needs the train_val net)")
        t = data_transform(tv)
        if t["crop_size"] and t["crop_size"] != size:
            raise ConfigError(f"{tv}: crop_size {t['crop_size']} but {deploy} takes {size}")
        return NetSpec(network, deploy, tv, folder / "solver.prototxt", size, resize=resize,
                       style="imagenet" if t["mean"] else "scratch", mirror=t["mirror"],
                       scale=t["scale"] or 1.0, weights=weights,
                       new_layers=tuple(new_layers))
    return NetSpec(network, deploy, None, None, size, style="imagenet", weights=weights)


def _input_side(deploy: Path) -> int:
    import models

    if not deploy.exists():
        raise ConfigError(f"{deploy}: missing (the experiments need the prototxt/ nets)")
    net = models.load_net(deploy, phase="TEST", batch=1)
    return int(next(iter(net.inputs.values()))[-1])


def weights_id(spec, seed: int | None = None) -> str:
    """SHA1 of the caffemodel, or a marker for Caffe-filler random init with its seed."""
    if spec.weights is None:
        return f"random-init-{RANDOM_INIT}-seed{seed}"
    from models.fetch import sha1_of

    return sha1_of(spec.weights)


# --------------------------------------------------------------------------------------------- data
def select_rows(index: pd.DataFrame, max_train: int | None, max_score: int | None) -> np.ndarray:
    """Row numbers used by every approach. ``None`` keeps all (paper); otherwise the first ``max_*`` patches of
    each patient per role, centre/middle patches first (smoke), so every approach sees the same subset."""
    if max_train is None and max_score is None:
        return np.arange(len(index))
    pri = {"centre": 0, "mid": 0}
    df = index.reset_index(drop=True).assign(_row=np.arange(len(index)),
                                             _pri=index["kind"].map(lambda k: pri.get(k, 1)).to_numpy())
    keep = []
    for (pid, role), g in df.groupby(["patient_id", "role"], sort=True):
        cap = max_train if role == "train" else max_score
        g = g.sort_values(["_pri", "slice", "_row"])
        keep.append(g["_row"].to_numpy() if cap is None else g["_row"].to_numpy()[:cap])
    return np.sort(np.concatenate(keep))


def synthetic_stores(root: Path, n_patients: int, seed: int, effect: float, sizes, progress: bool = False) -> dict:
    """A synthetic cohort (replicate.cohort.synth) under ``root/cohort`` (written once, reused) and its patch stores
    under ``root/patches``, one per patch size."""
    from replicate.cohort.patches import PatchConfig, PatchStore
    from replicate.cohort.synth import SynthConfig, generate

    root = Path(root)
    cohort = root / "cohort"
    if not (cohort / "synthetic_truth.csv").exists():
        generate(cohort, SynthConfig(patients=n_patients, seed=seed, effect=effect), overwrite=True,
                 progress=progress)
    return {s: PatchStore.build(cohort, PatchConfig(patch_size=s), root / "patches", progress=progress)
            for s in sorted(set(sizes))}


def patients_table(index: pd.DataFrame) -> pd.DataFrame:
    pts = index.groupby("patient_id", sort=True)["label"].agg(["min", "max"]).reset_index()
    bad = pts[pts["min"] != pts["max"]]
    if len(bad):
        raise ReplicateError(f"patch index: patient {bad.iloc[0]['patient_id']!r} has patches with both labels")
    return pd.DataFrame({"patient_id": pts["patient_id"].astype(str), "label": pts["min"].astype(int)})


# --------------------------------------------------------------------------------------------- runner
class Runner:
    """Runs every cell of a preset on patch stores (one per patch size), resumably."""

    def __init__(self, preset: Preset, stores: dict, run_dir: Path, device, weights_dir: Path | None = None,
                 progress: bool = True):
        self.p, self.stores, self.run_dir = preset, stores, Path(run_dir)
        self.device, self.weights_dir, self.progress = device, weights_dir, progress
        self._rows: dict[int, np.ndarray] = {}
        self.state = RunState(run_dir)
        self.timings: dict[str, float] = {}
        from replicate.experiments.features import FeatureCache

        self.cache = FeatureCache(run_dir, code=self.code_hash("extract"))
        first = stores[sorted(stores)[0]]
        self.patients = patients_table(first.index)
        for size, st in stores.items():
            other = patients_table(st.index)
            if not other.equals(self.patients):
                raise ReplicateError(f"patch stores {sorted(stores)[0]} and {size} px hold different patients or "
                                     "labels; every approach must see the same cohort")
        self.folds = {r: patient_folds(self.patients, preset.n_folds, seed=repeat_seed(preset.seed, r), repeat=r)
                      for r in range(preset.n_repeats)}

    def store(self, size: int):
        if size not in self.stores:
            raise ConfigError(f"no patch store for patch size {size} (have {sorted(self.stores)})")
        return self.stores[size]

    def cell_rows(self, cell: "Cell") -> np.ndarray:
        """The patch rows a cell trains on and scores: :meth:`rows`, or every row of its store for a scratch cell
        of a preset with ``scratch_patch_caps=False``."""
        if cell.approach == "scratch" and not self.p.scratch_patch_caps:
            return np.arange(len(self.store(cell.patch_size).index))
        return self.rows(cell.patch_size)

    def rows(self, size: int) -> np.ndarray:
        if size not in self._rows:
            self._rows[size] = select_rows(self.store(size).index, self.p.max_train_patches_per_patient,
                                           self.p.max_score_patches_per_patient)
        return self._rows[size]

    def preset_hash(self) -> str:
        """SHA1 of every setting of the preset (all fields except ``why``, which is prose)."""
        import json

        d = {k: v for k, v in asdict(self.p).items() if k != "why"}
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=repr).encode()).hexdigest()[:12]

    def code_hash(self, kind: str) -> str:
        """Package version + SHA1 of the source that computes a unit of ``kind`` (a key of
        :data:`replicate.experiments.unit_code.UNIT_CODE`), read from the checkout or the wheel."""
        return unit_code.code_id(kind)

    def unit_key(self, cell: Cell, repeat: int, fold: int, kind: str | None = None) -> str:
        """Everything a fold's result depends on: the cell, repeat and fold, the patch store's configuration key,
        the weights, the device, a hash of the whole preset and the code version (package version + a hash of
        the modules that compute this ``kind`` of unit; default the cell's,
        :func:`replicate.experiments.unit_code.unit_kind`). Any changed setting, or an edit to that code,
        recomputes the unit on resume; an edit elsewhere (report, plan, CLI) does not."""
        w = self.weights_dir if cell.approach != "scratch" and self.weights_dir is not None else RANDOM_INIT
        kind = unit_code.unit_kind(cell.approach) if kind is None else kind
        return (f"{cell.id}|repeat={repeat}|fold={fold}|store={self.store(cell.patch_size).key}|w={w}|"
                f"device={self.device.type}|preset={self.preset_hash()}|code={self.code_hash(kind)}")

    # -- one cell ---------------------------------------------------------------------------------
    def run_cell(self, cell: Cell, bar=None) -> list[FoldResult]:
        """Every fold of every repeat of one cell; finished folds are read back, the rest computed and saved.

        ``timings[cell.id]``: seconds spent computing the cell's folds, summed over the invocations that computed
        them (stored with each fold), plus this invocation's feature extraction."""
        out = []
        feats = None
        spent = 0.0
        for r in range(self.p.n_repeats):
            for fold in self.folds[r]:
                key = self.unit_key(cell, r, fold.fold)
                if self.state.done(key):
                    res = FoldResult.from_json(self.state.load(key))
                else:
                    t0 = time.perf_counter()
                    if cell.approach == "features" and feats is None:
                        feats = self.features(cell)
                    res = self.run_unit(cell, fold, feats)
                    res.extra["seconds"] = time.perf_counter() - t0
                    self.state.save(key, res.to_json())
                spent += float(res.extra.get("seconds", 0.0))
                out.append(res)
                if bar is not None:
                    bar.update(1)
        self.timings[cell.id] = spent
        return out

    def unit_seed(self, cell: Cell, repeat: int, fold: int) -> int:
        h = hashlib.sha1(f"{cell.id}|{repeat}|{fold}|{self.p.seed}".encode()).hexdigest()
        return int(h[:8], 16)

    def run_unit(self, cell: Cell, fold, feats) -> FoldResult:
        from replicate.experiments.training import TrainSettings, fold_data, train_fold

        store = self.store(cell.patch_size)
        data = fold_data(store.index, fold, self.cell_rows(cell), self.p.max_train_auc_patients)
        seed = self.unit_seed(cell, fold.repeat, fold.fold)
        if cell.approach == "features":
            return svm_fold(cell, fold, data, feats, unit=self.p.svm_unit, index=store.index)
        if cell.approach == "scratch":
            spec = scratch_spec(cell.network, self.p.scratch_variant)
            st = TrainSettings(epochs=self.p.epochs_by_input.get(spec.input_size, self.p.scratch_epochs),
                               batch_size=batch_size(self.p, spec), base_lr=cell.lr, step_epochs=self.p.step_epochs,
                               max_iters_per_epoch=self.p.max_iters_per_epoch.get(spec.input_size))
        else:
            spec = imagenet_spec(cell.network, self.weights_dir, transfer=True)
            st = TrainSettings(epochs=self.p.epochs_by_input.get(spec.input_size, self.p.transfer_epochs),
                               batch_size=batch_size(self.p, spec), step_epochs=self.p.step_epochs,
                               base_lr=transfer_base_lr(self.p, cell.network), last_lr=cell.lr,
                               max_iters_per_epoch=self.p.max_iters_per_epoch.get(spec.input_size))
        return train_fold(spec, store, fold, data, st, seed, self.device)

    def features(self, cell: Cell) -> dict:
        """All feature matrices this net/patch size needs (every blob of Tables 5-6 in one pass)."""
        from replicate.experiments.features import cached_features
        from replicate.experiments.training import NetPair

        spec = imagenet_spec(cell.network, self.weights_dir, transfer=False)
        store = self.store(cell.patch_size)
        rows = self.rows(cell.patch_size)
        blobs = sorted({c.blob for c in unique_cells(self.p)
                        if c.approach == "features" and c.network == cell.network
                        and c.patch_size == cell.patch_size})
        seed = self.unit_seed(Cell("features", "features", cell.network), 0, 0)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(rows), desc=f"features {cell.network} patch {cell.patch_size}", unit="patch",
                       leave=False)
        f = cached_features(self.cache, lambda: NetPair(spec, FEATURE_BATCH, seed, self.device), store, rows,
                            spec, blobs, weights_id(spec, seed), batch=FEATURE_BATCH, progress=bar,
                            pooling=self.p.pooling)
        if bar is not None:
            bar.close()
        return {"rows": rows, "blobs": f}

    # -- everything ---------------------------------------------------------------------------------
    def run_all(self, todo: list[Cell] | None = None) -> dict[str, list[FoldResult]]:
        """Run ``todo`` (default: every cell of the preset), skipping finished folds."""
        todo = unique_cells(self.p) if todo is None else todo
        n_units = len(todo) * self.p.n_repeats * self.p.n_folds
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=n_units, desc=f"{self.p.name}: folds", unit="fold")
        results = {}
        for cell in todo:
            if bar is not None:
                bar.set_postfix_str(cell.id[:60])
            results[cell.id] = self.run_cell(cell, bar)
            if self.progress and cell.id in self.timings:
                from tqdm import tqdm

                tqdm.write(f"{cell.id}: {self.timings[cell.id]:.1f} s")
        if bar is not None:
            bar.close()
        return results


def svm_fold(cell: Cell, fold, data, feats, unit: str = "patch", index=None) -> FoldResult:
    """Fit standardise+SVC on the fold's training samples (``unit``: one per patch, patient or lesion region;
    replicate.experiments.svm.fit_score; ``index`` = the store's patch index, needed unless ``unit="patch"``),
    score patients by their mean decision value."""
    from replicate.experiments.protocol import patient_scores
    from replicate.experiments.svm import fit_score, unit_groups
    from replicate.experiments.training import split_auc

    rows, x = feats["rows"], feats["blobs"][cell.blob]
    where = {int(r): i for i, r in enumerate(rows)}
    xtr = x[[where[int(r)] for r in data.train_rows]]
    xsc = x[[where[int(r)] for r in data.score_rows]]
    groups = {}
    if unit != "patch":
        groups = {"train_groups": unit_groups(index, data.train_rows, unit),
                  "score_groups": unit_groups(index, data.score_rows, unit)}
    s = fit_score(cell.kernel, xtr, data.train_labels, xsc, unit=unit, **groups)
    scores = patient_scores(data.score_patients, s)
    tr_auc, te, te_y, te_s = split_auc(fold, scores, data.labels)
    return FoldResult(fold.repeat, fold.fold, te, te_y, te_s, tr_auc,
                      {"n_train_patches": int(len(xtr)), "feature_length": int(x.shape[1])})


def summaries(p: Preset, results: dict[str, list[FoldResult]]) -> dict[str, dict]:
    """Protocol summary of every cell id."""
    out = {}
    for cid, rs in results.items():
        out[cid] = summarise(rs, n_folds=p.n_folds, n_boot=p.n_boot, seed=p.seed).to_json()
    return out


def __getattr__(name: str):
    """``PROTOTXT``: the nets folder (models.resources.nets_dir(): the checkout's prototxt/ or the wheel's)."""
    if name == "PROTOTXT":
        return nets_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
