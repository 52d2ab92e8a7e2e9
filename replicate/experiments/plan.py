"""What a grid will cost before it runs: its units, their FLOP, and wall-time estimates (issue 11, item 1).

A *unit* is one (cell, repeat, fold) of :mod:`replicate.experiments.grid` (the unit of work the runner stores and
resumes). For each unit the plan counts:

- **training** (scratch, transfer): ``6 x MACC_train x samples x epochs`` FLOP, where ``MACC_train`` is the TRAIN
  phase net's multiply-accumulates per image (``models.net_cost`` at batch 1: GoogLeNet's auxiliary heads
  included), 2 FLOP per MACC and the backward pass counted as twice the forward (gradients with respect to the
  inputs and to the weights), the usual convention (Kaplan et al. 2020, "Scaling laws for neural language models",
  section 2.1: C ~ 6N per sample). ``samples`` = iterations per epoch x batch (Caffe's data layer tops up the last
  batch), iterations = ceil(training patches of the fold / batch), capped as the preset caps them;
- **evaluation**: after every epoch every scored patch (the fold's test-role patches) goes through the TEST net
  once: ``2 x MACC_deploy`` per patch;
- **feature extraction** (Tables 5-6): once per (net, patch size) for the whole run, every selected patch through
  the ImageNet deploy net (``2 x MACC_deploy``; every blob comes out of the same pass), attributed to the first
  unit that needs it;
- **SVM fits**: one per features unit on the fold's training samples (``n`` rows x ``d`` features; the rows follow
  the preset's ``svm_unit``: patches, patients or lesion regions, replicate.experiments.svm_cost; the other
  readings' seconds are given beside, ``svm_seconds_by_unit``). Its FLOP are given as
  ``2 n^2 d`` (one pass over the Gram matrix; libsvm's SMO evaluates kernel columns on demand, so this is an order
  of magnitude, not a count); its seconds come from an empirical model ``t = a n^b (d / 1000)`` per kernel, fitted
  by ``benchmarks/svm_fit.py`` (:data:`SVM_MODEL`; the linear kernel with n > d: the interior-point solver's model,
  ``svm_cost.INTERIOR_POINT_MODEL``), since SVM time is not FLOP-bound.

Wall-time estimates: on this machine from a seconds-long microbenchmark of each trained net's train step (the
achieved FLOP/s of forward + backward + the Caffe SGD update (the device path's fused form) at the device's batch; forward-only work is assumed
to run at the same FLOP/s, which slightly flatters evaluation), and on named reference GPUs at their peak rate
(:data:`REFERENCE_GPUS`; the SVM stays on the CPU in both).

Cohort size: ``synthetic`` (what ``run`` uses without ``--data``: the preset's synthetic patient count with the
synthetic generator's mean lesion extent), ``data`` (counted from a cohort's ``Annotation_Boxes.xlsx``: every
slice of every box gives ``1 + n_aug`` training patches; exclusions are not applied, so an upper bound) or
``paper`` (Zhu et al. 2019, "Tumor Patch Extraction": 270 patients, 33.1 lesion regions x 5 = 44,660 training
patches a patch size; 5 slices x 5 patches = 25 test patches a patient).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from replicate.errors import ConfigError

#: Peak dense rates of named cards (FLOP/s). H200: the figure issue 11 takes for its bf16 rate; GTX 1080 (the
#: paper's card, "a desktop with a NVIDIA GTX 1080 GPU"): 2560 CUDA cores x 1733 MHz boost x 2 = 8.87 TFLOP/s fp32
#: (NVIDIA GeForce GTX 1080 specifications), which Caffe used.
REFERENCE_GPUS = {"H200 bf16": 790e12, "GTX 1080 fp32": 8.87e12}

#: SVM fit seconds ``a * n**b * (d / 1000)`` per kernel: (a, b) fitted by least squares on log t vs log n by
#: ``benchmarks/svm_fit.py --sizes 500,1000,2000,4000 --json`` (standardise + SVC, d = 1000, weakly separable
#: synthetic features, one fit each) on this project's 2-core machine under load (2026-11-30); README "SVM fit
#: time". The linear kernel's time jumps once n > d (4000 rows: 538 s vs 3.3 s at 2000; libsvm's SMO on a
#: non-separable problem), so its exponent (4.25) and extrapolation are the least certain; the grid no longer fits
#: libsvm there (n > d: replicate.experiments.svm_linear's interior-point solver), so this entry prices n <= d only.
SVM_MODEL = {"poly": (1.71e-08, 2.49), "rbf": (7.62e-09, 2.59), "linear": (9.97e-14, 4.25)}

PAPER_COHORT = {"n_patients": 270, "train_patches": 44660}   # "44660 (33.1 lesion regions x 5 x 270) patches"
TEST_PATCHES_PER_PATIENT = 25   # replicate.cohort.patches: test_slices (5) x 5 (tl, tr, bl, br, mid)


@dataclass(frozen=True)
class CohortSize:
    """How many patches a patch store of the cohort holds (per patch size)."""

    source: str                   # "synthetic" | "data" | "paper"
    n_patients: int
    train_patches: float          # role "train" patches of the whole cohort
    test_patches_per_patient: int = TEST_PATCHES_PER_PATIENT

    @property
    def train_per_patient(self) -> float:
        return self.train_patches / max(1, self.n_patients)


def cohort_size(preset, data: str | os.PathLike | None = None, paper: bool = False, clinical=None,
                boxes=None) -> CohortSize:
    """The cohort a run of ``preset`` would see: ``--data ROOT`` (its box table, found as the run finds it:
    ``replicate.cohort.duke.locate_inputs`` with ``--clinical`` / ``--boxes``), the paper's stated size, or the
    preset's synthetic cohort. Raises ConfigError / CohortError for an unreadable ``ROOT`` or spreadsheet."""
    from replicate.cohort.patches import PatchConfig

    per_region = 1 + PatchConfig().n_aug
    if paper:
        return CohortSize("paper", PAPER_COHORT["n_patients"], float(PAPER_COHORT["train_patches"]))
    if data is not None:
        from replicate.cohort.duke import BOX_FILE, locate_inputs, read_boxes

        root = Path(data)
        if not root.is_dir():
            raise ConfigError(f"--data {root}: not a folder")
        if boxes is not None:
            box_file = Path(boxes)
        elif (root / BOX_FILE).is_file():
            box_file = root / BOX_FILE
        else:
            box_file = locate_inputs(root, clinical=clinical, boxes=boxes).boxes
        boxes = read_boxes(box_file)
        if not boxes:
            raise ConfigError(f"{box_file}: no complete box rows")
        slices = sum(abs(b[5] - b[4]) + 1 for bs in boxes.values() for b in bs)
        return CohortSize("data", len(boxes), float(slices * per_region))
    from replicate.cohort.synth import SynthConfig

    n = int(preset.synth.get("n_patients", SynthConfig().patients))
    lo, hi = SynthConfig().lesion_slices
    return CohortSize("synthetic", n, n * (lo + hi) / 2 * per_region)


# ------------------------------------------------------------------------------------------------ nets
@dataclass(frozen=True)
class NetCostInfo:
    folder: str                 # prototxt/<folder>
    input_size: int
    macc_train: int             # TRAIN net, per image (0: features-only net)
    macc_deploy: int            # TEST net, per image
    feature_dim: dict = field(default_factory=dict)   # blob -> feature length (x-y pooled)


_NET_CACHE: dict[str, NetCostInfo] = {}


def net_info(folder: str) -> NetCostInfo:
    """MACC per image of ``prototxt/<folder>`` (``models.net_cost`` at batch 1) and its blobs' feature lengths."""
    if folder in _NET_CACHE:
        return _NET_CACHE[folder]
    import models
    from replicate.experiments.grid import PROTOTXT

    d = PROTOTXT / folder
    dep = models.load_net(d / "deploy.prototxt", phase="TEST", batch=1)
    side = int(next(iter(dep.inputs.values()))[-1])
    macc_train = 0
    if (d / "train_val.prototxt").exists():
        tr = models.load_net(d / "train_val.prototxt", phase="TRAIN",
                             input_shapes={"data": (1, 3, side, side), "label": (1,)})
        macc_train = models.net_cost(tr).macc
    dims = {b: int(s[1]) for b, s in dep.blob_shapes.items() if len(s) >= 2}
    info = NetCostInfo(folder, side, macc_train, models.net_cost(dep).macc, dims)
    _NET_CACHE[folder] = info
    return info


def cell_folder(preset, cell) -> str:
    """The prototxt folder a cell trains (scratch, transfer) or extracts features with (features)."""
    from replicate.experiments.grid import IMAGENET_NETS, SCRATCH_NETS

    if cell.approach == "scratch":
        return SCRATCH_NETS[preset.scratch_variant][cell.network]
    if cell.approach == "transfer":
        return IMAGENET_NETS[cell.network][0]
    return IMAGENET_NETS[cell.network][1]


def train_batch(preset, folder: str) -> int:
    """The training batch of ``prototxt/<folder>``: the preset's ``batch_size`` when set, else the batch_size of
    the TRAIN data layer of its train_val.prototxt (as the training code reads it, grid.batch_size)."""
    if preset.batch_size is not None:
        return int(preset.batch_size)
    from replicate.experiments.grid import PROTOTXT
    from replicate.experiments.training import data_transform

    return int(data_transform(PROTOTXT / folder / "train_val.prototxt")["batch_size"])


# ------------------------------------------------------------------------------------------------ units
@dataclass(frozen=True)
class PlanUnit:
    """One (cell, repeat, fold) with its work."""

    cell_id: str
    approach: str
    network: str
    folder: str
    repeat: int
    fold: int
    train_flop: float = 0.0
    eval_flop: float = 0.0
    feature_flop: float = 0.0
    svm_flop: float = 0.0
    svm_seconds: float = 0.0      # empirical CPU model (SVM_MODEL; the linear kernel's solver by svm_linear's rule)
    kernel: str | None = None
    svm_seconds_by_unit: tuple = ()   # ((training unit, seconds), ...): every reading of the SVM's training sample

    @property
    def flop(self) -> float:
        return self.train_flop + self.eval_flop + self.feature_flop + self.svm_flop


def svm_seconds(kernel: str, n: float, d: int) -> float:
    """Empirical CPU seconds of one ``make_svm(kernel)`` fit on an (n, d) matrix: libsvm's (:data:`SVM_MODEL`),
    or for the linear kernel with n > d the interior-point solver's (replicate.experiments.svm_cost)."""
    from replicate.experiments.svm_cost import interior_point_seconds
    from replicate.experiments.svm_linear import use_interior_point

    if kernel == "linear" and use_interior_point(n, d):
        return interior_point_seconds(n, d)
    a, b = SVM_MODEL[kernel]
    return a * n ** b * (d / 1000.0)


def _train_kw(p, cell, info, folder: str, train_rows: float, score_rows: float) -> dict:
    """FLOP of one trained unit: ``train_rows`` training patches, ``score_rows`` scored after every epoch."""
    base_epochs = p.scratch_epochs if cell.approach == "scratch" else p.transfer_epochs
    epochs = p.epochs_by_input.get(info.input_size, base_epochs)
    batch = train_batch(p, folder)
    iters = math.ceil(train_rows / batch)
    cap = p.max_iters_per_epoch.get(info.input_size)
    if cap:
        iters = min(iters, cap)
    return {"train_flop": 6.0 * info.macc_train * iters * batch * epochs,
            "eval_flop": 2.0 * info.macc_deploy * score_rows * epochs}


def _score_rows(p, n_train_pat: float, n_test_pat: float, te_pp: float) -> float:
    """Patches a trained unit scores after every epoch: its test patients and its training patients (capped at
    ``2 x max_train_auc_patients`` as the runner caps them), ``te_pp`` scoring patches each."""
    scored = n_train_pat if p.max_train_auc_patients is None else min(n_train_pat, 2 * p.max_train_auc_patients)
    return (scored + n_test_pat) * te_pp


#: Class prevalence assumed when the plan decides which learning-curve sizes can be split into ``n_folds``
#: stratified folds (the paper's cohort: 90 luminal A of 270, "Patient Population"; the synthetic cohort's too).
LC_PREVALENCE = 90 / 270


def trained_beyond_units(preset, cohort: CohortSize, tr_pp: float, te_pp: float) -> list[PlanUnit]:
    """The trainings of the trained-net "beyond" analyses (:mod:`replicate.experiments.trainedcv`):

    * nested CV over each Figure 2 sweep's learning rates: ``n_lr x INNER_FOLDS x n_folds`` inner trainings per
      sweep (training side ``n (k-1)/k (I-1)/I`` patients, scored side ``n (k-1)/k / I``); the outer fits are the
      grid's sweep units, counted here only when the preset's grid does not run that cell;
    * learning curves of the headline trained cells: ``draws x n_folds`` trainings per size below the cohort whose
      subset (at :data:`LC_PREVALENCE`) holds ``n_folds`` patients of each class, training rows scaled to the
      subset; the full-cohort point is the grid's folds (counted only when the grid does not run the cell).

    Unit ``cell_id``: ``<cell id> [nested lr inner]`` / ``[nested lr outer]`` / ``[learning curve n=S]`` /
    ``[learning curve all]``; ``repeat`` the draw (0 for nested), ``fold`` the outer fold (x I + inner fold)."""
    from replicate.experiments.grid import cells, unique_cells
    from replicate.experiments.nested_cv import INNER_FOLDS
    from replicate.experiments.trainedcv import SWEEPS, headline_cells

    p, n, k, inner = preset, cohort.n_patients, preset.n_folds, INNER_FOLDS
    in_grid = {c.id for c in unique_cells(p)}
    outer_done: set = set()
    out: list[PlanUnit] = []

    def add(cell, tag, repeat, fold, n_train_pat, n_test_pat):
        folder = cell_folder(p, cell)
        kw = _train_kw(p, cell, net_info(folder), folder, n_train_pat * tr_pp,
                       _score_rows(p, n_train_pat, n_test_pat, te_pp))
        out.append(PlanUnit(f"{cell.id} [{tag}]", cell.approach, cell.network, folder, repeat, fold, **kw))

    def add_outer(cell, tag):   # the grid's repeat-0 folds of the cell, unless the grid (or an earlier add) has them
        if cell.id in in_grid or cell.id in outer_done:
            return
        outer_done.add(cell.id)
        for f in range(k):
            add(cell, tag, 0, f, n * (k - 1) / k, n / k)

    t = cells(p)
    for sweep in SWEEPS:
        cs = list({c.id: c for c in t[sweep]}.values())
        if len(cs) < 2:
            continue
        outer_train = n * (k - 1) / k
        for c in cs:
            for f in range(k):
                for i in range(inner):
                    add(c, "nested lr inner", 0, f * inner + i, outer_train * (inner - 1) / inner,
                        outer_train / inner)
            add_outer(c, "nested lr outer")
    for c in headline_cells(p):
        for size in p.learning_curve_sizes:
            if size is None or int(size) == n:
                add_outer(c, "learning curve all")
                continue
            size = int(size)
            n_pos = round(size * LC_PREVALENCE)
            if size > n or min(n_pos, size - n_pos) < k:
                continue
            for d in range(p.learning_curve_draws):
                for f in range(k):
                    add(c, f"learning curve n={size}", d, f, size * (k - 1) / k, size / k)
    return out


#: Unit ids of the negative control's second (null-effect) cohort, run by presets with ``controls`` (quick).
NULL_PREFIX = "null cohort: "


def units(preset, cohort: CohortSize, beyond_trained: bool | None = None) -> list[PlanUnit]:
    """Every unit of ``preset`` on ``cohort`` with its FLOP (the module docstring gives the conventions), plus
    the trainings of the trained-net "beyond" analyses (:func:`trained_beyond_units`) when ``beyond_trained``
    (None: ``preset.beyond_trained``; ``run --beyond-trained`` turns them on for any preset), plus, for a preset
    with ``controls`` (quick), its control cells again on the null cohort (ids prefixed :data:`NULL_PREFIX`).

    Smoke caps (patches per patient, iterations per epoch, epochs by input size, scored training patients) are
    applied as the runner applies them."""
    from replicate.experiments.grid import unique_cells

    p = preset
    n = cohort.n_patients
    k = p.n_folds
    n_train_pat = n * (k - 1) / k
    n_test_pat = n / k
    tr_pp = cohort.train_per_patient
    if p.max_train_patches_per_patient is not None:
        tr_pp = min(tr_pp, p.max_train_patches_per_patient)
    te_pp = cohort.test_patches_per_patient
    if p.max_score_patches_per_patient is not None:
        te_pp = min(te_pp, p.max_score_patches_per_patient)
    train_rows = n_train_pat * tr_pp
    score_rows = _score_rows(p, n_train_pat, n_test_pat, te_pp)
    from replicate.cohort.patches import PatchConfig
    from replicate.experiments.svm import TRAINING_UNITS
    from replicate.experiments.svm_cost import svm_training_rows

    regions_pp = min(tr_pp, cohort.train_per_patient / (1 + PatchConfig().n_aug))
    svm_rows = {u: svm_training_rows(u, n_train_pat, tr_pp, regions_pp) for u in TRAINING_UNITS}
    all_rows = n * (tr_pp + te_pp)
    out: list[PlanUnit] = []
    extracted: set = set()
    from replicate.experiments.controls import control_cells

    controls = set(control_cells(p.controls))
    for cell in unique_cells(p):
        folder = cell_folder(p, cell)
        info = net_info(folder)
        for r in range(p.n_repeats):
            for f in range(k):
                kw = {}
                if cell.approach == "scratch" and not p.scratch_patch_caps:   # every patch (quick on CUDA)
                    kw = _train_kw(p, cell, info, folder, n_train_pat * cohort.train_per_patient,
                                   _score_rows(p, n_train_pat, n_test_pat, cohort.test_patches_per_patient))
                elif cell.approach in ("scratch", "transfer"):
                    kw = _train_kw(p, cell, info, folder, train_rows, score_rows)
                else:
                    key = (folder, cell.patch_size)
                    if key not in extracted:
                        extracted.add(key)
                        kw["feature_flop"] = 2.0 * info.macc_deploy * all_rows
                    d = info.feature_dim.get(cell.blob, 1000)
                    kw["svm_flop"] = 2.0 * svm_rows[p.svm_unit] ** 2 * d
                    kw["svm_seconds"] = svm_seconds(cell.kernel, svm_rows[p.svm_unit], d)
                    kw["svm_seconds_by_unit"] = tuple((u, svm_seconds(cell.kernel, m, d))
                                                      for u, m in svm_rows.items())
                    kw["kernel"] = cell.kernel
                out.append(PlanUnit(cell.id, cell.approach, cell.network, folder, r, f, **kw))
                if cell.id in controls:   # the negative control reruns the control cells on a null cohort
                    out.append(PlanUnit(NULL_PREFIX + cell.id, cell.approach, cell.network, folder, r, f, **kw))
    if p.beyond_trained if beyond_trained is None else beyond_trained:
        out += trained_beyond_units(p, cohort, tr_pp, te_pp)
    return out


# ------------------------------------------------------------------------------------------------ rates
def bench_train_step(folder: str, device: str = "cpu", batch: int | None = None, seconds: float = 1.0) -> dict:
    """Achieved FLOP/s of one net's train step (forward + backward + ``models.CaffeSGD`` update) on ``device``:
    one warm-up step, then steps until ``seconds`` have passed (at least one). Returns
    ``{"folder", "device", "batch", "step_seconds", "flop_per_step", "flop_per_s"}``."""
    import torch

    import models
    from replicate.experiments.grid import PROTOTXT
    from replicate.experiments.training import caffe_sgd_step

    info = net_info(folder)
    dev = torch.device(device)
    if batch is None:
        batch = 32 if dev.type == "cuda" else 2
    d = PROTOTXT / folder
    net = models.load_net(d / "train_val.prototxt", phase="TRAIN",
                          input_shapes={"data": (batch, 3, info.input_size, info.input_size), "label": (batch,)})
    module = models.to_torch(net, seed=0).to(dev)
    from models.schema import pb

    solver = models.CaffeSGD(module.param_groups(), pb.SolverParameter(base_lr=1e-6, momentum=0.9,
                                                                       weight_decay=0.0005, lr_policy="fixed"),
                             module)
    x = torch.randn(batch, 3, info.input_size, info.input_size, device=dev)
    y = torch.randint(0, 2, (batch,), device=dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        module = module.to(memory_format=torch.channels_last)

    def step():
        solver.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = module.loss(module(data=x, label=y))
        else:
            loss = module.loss(module(data=x, label=y))
        loss.backward()
        caffe_sgd_step(solver)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    step()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        sync()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    flop = 6.0 * info.macc_train * batch
    return {"folder": folder, "device": device, "batch": batch, "step_seconds": dt / n, "flop_per_step": flop,
            "flop_per_s": flop * n / dt}


def _bench_cache_path() -> Path:
    root = os.environ.get("RGR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "radiogenomics-replica")
    return Path(root) / "plan-bench.json"


def machine_rates(folders, device: str = "cpu", seconds: float = 1.0, cache: bool = True) -> dict[str, dict]:
    """:func:`bench_train_step` for each folder, cached in ``$RGR_CACHE_DIR/plan-bench.json`` per (folder, device,
    torch version, threads) so that a second ``plan`` is instant."""
    import torch

    from replicate.experiments.runstate import atomic_write_json

    path = _bench_cache_path()
    stored = {}
    if cache and path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
    tag = f"v2|{device}|{torch.__version__}|threads={torch.get_num_threads()}"   # v2: fused SGD step
    if device == "cuda":
        tag += f"|{torch.cuda.get_device_name(0)}"
    out, changed = {}, False
    for f in folders:
        key = f"{f}|{tag}"
        if key not in stored:
            stored[key] = bench_train_step(f, device, seconds=seconds)
            changed = True
        out[f] = stored[key]
    if cache and changed:
        atomic_write_json(path, stored)
    return out


# ------------------------------------------------------------------------------------------------ plan
def make_plan(preset, cohort: CohortSize, device: str | None = "cpu", bench_seconds: float = 1.0,
              cache: bool = True, beyond_trained: bool | None = None) -> dict:
    """The plan as a JSON-able dict: top-level ``units`` (count), ``flop`` (total), ``seconds_estimate`` (this
    machine; ``None`` when ``device`` is None: no microbenchmark), ``reference`` (seconds at each
    :data:`REFERENCE_GPUS` peak), ``approaches`` (per approach and net: units, FLOP by kind, seconds) and
    ``cohort``/``benchmark``/``convention``."""
    from replicate.experiments.grid import IMAGENET_NETS

    us = units(preset, cohort, beyond_trained)
    trained = sorted({u.folder for u in us if u.approach in ("scratch", "transfer")})
    feat_to_train = {v[1]: v[0] for v in IMAGENET_NETS.values()}
    rates = machine_rates(trained + sorted({feat_to_train[u.folder] for u in us if u.approach == "features"}
                                           - set(trained)), device, bench_seconds, cache) if device else {}

    def rate(folder):
        r = rates.get(folder) or rates.get(feat_to_train.get(folder, ""))
        return r["flop_per_s"] if r else None

    approaches: dict = {}
    total_s = 0.0 if device else None
    for u in us:
        a = approaches.setdefault(u.approach, {"units": 0, "flop": {}, "seconds_estimate": 0.0, "nets": {}})
        net = a["nets"].setdefault(u.network, {"folder": u.folder, "units": 0, "flop": {},
                                               "seconds_estimate": 0.0})
        kinds = {"train": u.train_flop, "eval": u.eval_flop, "features": u.feature_flop, "svm": u.svm_flop}
        for t in (a, net):
            t["units"] += 1
            for kname, v in kinds.items():
                if v:
                    t["flop"][kname] = t["flop"].get(kname, 0.0) + v
        r = rate(u.folder)
        s = u.svm_seconds + ((u.train_flop + u.eval_flop + u.feature_flop) / r if r else 0.0)
        a["seconds_estimate"] += s
        net["seconds_estimate"] += s
        if total_s is not None:
            total_s += s
    for a in approaches.values():
        a["flop"]["total"] = sum(v for k, v in a["flop"].items())
        for net in a["nets"].values():
            net["flop"]["total"] = sum(v for k, v in net["flop"].items())
    net_flop = sum(u.train_flop + u.eval_flop + u.feature_flop for u in us)
    svm_s = sum(u.svm_seconds for u in us)
    by_kernel: dict = {}
    by_unit: dict = {}
    for u in us:
        if u.kernel:
            by_kernel[u.kernel] = by_kernel.get(u.kernel, 0.0) + u.svm_seconds
        for unit, sec in u.svm_seconds_by_unit:
            by_unit.setdefault(unit, {}).setdefault(u.kernel, 0.0)
            by_unit[unit][u.kernel] += sec
    import torch

    return {
        "preset": preset.name,
        "cohort": asdict(cohort) | {"train_per_patient": cohort.train_per_patient},
        "units": len(us),
        "flop": sum(u.flop for u in us),
        "seconds_estimate": total_s,
        "device": None if not device else {
            "type": device, "threads": torch.get_num_threads(),
            "name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"},
        "reference": {name: {"flop_per_s": peak, "seconds": net_flop / peak + svm_s,
                             "seconds_nets": net_flop / peak, "seconds_svm_cpu": svm_s}
                      for name, peak in REFERENCE_GPUS.items()},
        "approaches": approaches,
        "svm_seconds_by_kernel": by_kernel,
        "svm_unit": preset.svm_unit,
        "svm_seconds_by_unit": by_unit,    # the same fits under each reading of the SVM's training sample
        "benchmark": rates,
        "convention": "training 6 x MACC_train per sample (fwd 2 FLOP/MACC, bwd 2 x fwd); eval and features "
                      "2 x MACC_deploy per patch; SVM 2 n^2 d FLOP, seconds from an empirical CPU model",
    }


def human_seconds(s: float | None) -> str:
    """3.2 s, 4.1 min, 3.9 h, 14.2 d, 3.1 y."""
    if s is None:
        return "n/a"
    for unit, scale in (("y", 365.25 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if s >= scale:
            return f"{s / scale:.1f} {unit}"
    return f"{s:.1f} s"


def headline(plan: dict) -> str:
    """One line for the top of a run: units, FLOP, this machine's estimate and the reference cards'."""
    ref = ", ".join(f"{k} peak {human_seconds(v['seconds_nets'])}" for k, v in plan["reference"].items())
    svm = next(iter(plan["reference"].values()))["seconds_svm_cpu"]
    ref += f" (+ SVM fits on the CPU ~{human_seconds(svm)})" if svm else ""
    here = ""
    if plan.get("seconds_estimate") is not None:
        dev = plan["device"]
        here = f"; this machine ({dev['name']}, {dev['threads']} threads) ~{human_seconds(plan['seconds_estimate'])}"
    c = plan["cohort"]
    return (f"plan {plan['preset']}: {plan['units']} units, {plan['flop']:.2e} FLOP on a {c['source']} cohort of "
            f"{c['n_patients']} patients ({c['train_patches']:.0f} training patches){here}; {ref}")
