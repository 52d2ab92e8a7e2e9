"""Training from scratch and fine-tuning with Caffe's SGD solver (Zhu et al. 2019, "Training from Scratch",
"Transfer Learning", Table 2; Caffe: src/caffe/solvers/sgd_solver.cpp through ``models.CaffeSGD``).

One call of :func:`train_fold` trains one net on the training patients of one fold and scores patients after every
epoch, giving the per-epoch training and test AUC curves of Figure 2 and the final out-of-fold patient scores.

- Nets: ``prototxt/<net>/train_val.prototxt`` in TRAIN phase (its loss layers, GoogLeNet's auxiliary heads with
  loss_weight 0.3 included; Caffe's objective via ``CaffeModule.loss``) is trained; ``deploy.prototxt`` in TEST
  phase (dropout off) shares its parameters by layer name and scores the patches, as Caffe's test net does.
  Parameters start from Caffe's fillers (``models.to_torch``, seeded) or an ImageNet caffemodel.
- Input: the TRAIN data layer's ``transform_param`` (crop_size, mirror, mean, scale) and ``batch_size`` are honoured
  the way Caffe's DataTransformer applies them to an 8-bit patch image (``(pixel - mean) * scale`` on 0..255
  values; random crop and mirror in TRAIN, centre crop in TEST); the mean is subtracted by
  ``replicate.cohort.preprocess.to_net_input(style="imagenet")`` when the layer declares one.
- Transfer learning (paper: "the output dimension of the last fully connected layer was changed from 1000 to 2,
  and the weights in this layer were re-initialized randomly ... learning rate of the last fully connected layer
  was set to 0.001 ... (0.0001)" for all the other layers): ``prototxt/{googlenet_transfer,vgg16}`` carry renamed
  2-way layers (Caffe's fine-tuning convention: a renamed layer is not copied from the caffemodel); their
  ``lr_mult`` is set to ``last_lr / base_lr`` (the Figure 2 row 2 sweep). Patches are resized to 256 and a random
  224 crop is taken every iteration (paper: "randomly cropped ... in each epoch"); centre crop when scoring.
- Solver: ``solver.prototxt``'s momentum and weight decay; ``base_lr`` from the experiment; ``lr_policy: "step"``,
  ``gamma: 0.5``, ``stepsize`` = 5 epochs of iterations (Table 2: "reduced 50% after each 5 epochs").
- Scores: the softmax probability of class 1 (luminal A) per patch, averaged per patient (protocol.patient_scores).
- Device: CUDA with bf16 autocast and channels_last when requested, else CPU float32. On CUDA,
  :func:`train_fold` takes the device path (:func:`train_folds_packed`, issue 11 item 2): the patch store resident
  in device memory when it fits (:class:`DevicePatches`), resize / crop / mirror on the device
  (:func:`device_prepare`), every random draw (permutation, crops, dropout masks) from the unit's own
  ``torch.Generator`` on the device, no host synchronisation per iteration (the loss is summed on the device and
  checked once an epoch), ``cudnn.benchmark``, large-batch scoring, optionally ``torch.compile``; several units can
  run packed on one GPU, each on its own CUDA stream, with each unit's numbers unchanged by the packing. CPU runs
  keep the host path below unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from replicate.errors import ConfigError, ReplicateError
from replicate.experiments.protocol import Fold, FoldResult, auc, patient_scores


@dataclass(frozen=True)
class NetSpec:
    """A net as an experiment uses it: ``prototxt/<folder>/{train_val,deploy,solver}.prototxt``."""

    key: str                      # the paper's row name, e.g. "GoogleNet_R"
    deploy: Path                  # TEST-phase net (scores, features)
    train_val: Path | None = None  # TRAIN-phase net with its loss layers (training); None = features only
    solver: Path | None = None    # solver.prototxt (momentum, weight decay)
    input_size: int = 224         # the net's input side (its crop_size / deploy input)
    resize: int | None = None     # resize patches to this side before cropping (transfer: 256); None = input_size
    style: str = "scratch"        # replicate.cohort.preprocess.to_net_input style ("imagenet" subtracts the BGR mean)
    mirror: bool = False          # transform_param.mirror of the TRAIN data layer
    scale: float = 1.0            # transform_param.scale of the TRAIN data layer (Caffe's default 1: 0..255 input)
    weights: Path | None = None   # ImageNet caffemodel; None = Caffe fillers (seeded)
    new_layers: tuple = ()        # transfer: the re-initialised 2-way layers whose lr is swept


@dataclass
class TrainSettings:
    """How one fold trains. Every value comes from the preset (replicate.experiments.grid.Preset: epochs, the
    step schedule in epochs) or the net's files (solver.prototxt: base_lr, gamma, momentum, weight decay;
    train_val.prototxt: batch_size); nothing here restates a paper number."""

    epochs: int
    batch_size: int
    base_lr: float
    last_lr: float | None = None          # transfer only: lr of the replaced last layer
    step_epochs: int | None = None        # lr * gamma every this many epochs; None: no step within the run
    gamma: float | None = None            # None: the solver file's gamma
    max_iters_per_epoch: int | None = None  # smoke only: cap on iterations per epoch
    eval_batch: int = 64


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = CUDA when present, else CPU (issue 5, item 9)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------- nets
def data_transform(train_val: Path) -> dict:
    """The TRAIN data layer's transform_param and batch size (Caffe data_transformer.cpp semantics are applied by
    :func:`prepare`): crop_size, mirror, whether a mean is subtracted, batch_size."""
    import models

    proto = models.read_net_text(train_val)
    for layer in proto.layer:
        if layer.type in ("Data", "ImageData") and any(r.phase == 0 for r in layer.include):
            tp = layer.transform_param
            batch = (layer.data_param.batch_size if layer.type == "Data" else layer.image_data_param.batch_size)
            return {"crop_size": int(tp.crop_size), "mirror": bool(tp.mirror),
                    "mean": bool(len(tp.mean_value) or tp.mean_file), "scale": float(tp.scale),
                    "batch_size": int(batch)}
    raise ConfigError(f"{train_val}: no TRAIN-phase Data layer to read crop_size/mirror/batch_size from")


def train_proto(spec: NetSpec, new_lr_mult: float | None):
    """The train_val NetParameter; for transfer learning the new 2-way layers get ``lr_mult = last_lr / base_lr``
    (bias twice that, the BVLC convention) for the Figure 2 row 2 sweep."""
    import models

    proto = models.read_net_text(spec.train_val)
    if not spec.new_layers or new_lr_mult is None:
        return proto
    by_name = {l.name: l for l in proto.layer}
    for name in spec.new_layers:
        layer = by_name.get(name)
        if layer is None or layer.type != "InnerProduct" or layer.inner_product_param.num_output != 2:
            raise ConfigError(f"{spec.train_val}: layer {name!r} should be a 2-way InnerProduct (the re-initialised "
                              "last layer)")
        del layer.param[:]
        layer.param.add(lr_mult=float(new_lr_mult), decay_mult=1.0)
        layer.param.add(lr_mult=2.0 * float(new_lr_mult), decay_mult=0.0)
    return proto


def with_default_fillers(deploy: Path):
    """The deploy NetParameter with ``xavier`` weights and constant-0 biases wherever a Convolution or
    InnerProduct layer gives no filler (VGG16's deploy file gives none: Caffe would fill zeros, making every
    randomly initialised feature 0). Used only for feature nets run without pretrained weights."""
    import models

    proto = models.read_net_text(deploy)
    filled = []
    for layer in proto.layer:
        param = {"Convolution": layer.convolution_param, "InnerProduct": layer.inner_product_param}.get(layer.type)
        if param is not None and not param.HasField("weight_filler"):
            param.weight_filler.type = "xavier"
            param.bias_filler.type = "constant"
            filled.append(layer.name)
    return proto, filled


class NetPair:
    """The TRAIN-phase train_val module (trained, with its loss layers) and the TEST-phase deploy module sharing its
    parameters by layer name (``models.to_torch(..., params_from=...)``: Caffe's train net / test net sharing).

    Without ``spec.train_val`` only the deploy module is built (feature extraction)."""

    def __init__(self, spec: NetSpec, batch: int, seed: int, device: torch.device, new_lr_mult=None):
        import models

        self.spec, self.device = spec, device
        self.weights_report = None
        deploy = spec.deploy
        self.filled = []
        if spec.train_val is None and spec.weights is None:
            deploy, self.filled = with_default_fillers(spec.deploy)
        self.test_net = models.load_net(deploy, phase="TEST", batch=batch)
        self.input_name = next(iter(self.test_net.inputs))
        side = self.test_net.inputs[self.input_name][-1]
        if side != spec.input_size:
            raise ConfigError(f"{spec.deploy}: input {self.input_name!r} is {side} wide, expected {spec.input_size}")
        if spec.train_val is not None:
            self.train_net = models.load_net(
                train_proto(spec, new_lr_mult), phase="TRAIN",
                input_shapes={"data": (batch, 3, spec.input_size, spec.input_size), "label": (batch,)})
            self.train_module = models.to_torch(self.train_net, seed=seed)
            owner = self.train_module
        else:
            self.train_net = self.train_module = None
            owner = None
        if owner is None:
            self.test_module = models.to_torch(self.test_net, seed=seed)
            owner = self.test_module
        else:
            self.test_module = models.to_torch(self.test_net, params_from=owner)
        if spec.weights is not None:  # shared parameters: the test module sees the loaded weights too
            self.weights_report = models.load_caffemodel(owner, spec.weights)
        for m in (self.train_module, self.test_module):
            if m is None:
                continue
            m.to(device)
            if device.type == "cuda":
                m.to(memory_format=torch.channels_last)
        self.test_module.eval()
        if self.train_module is not None:
            self.train_module.train()
        self.output = "prob" if "prob" in self.test_net.blobs else self.test_net.outputs[-1]

    def _run(self, module, blobs, dropout_masks=None, **inputs):
        """Forward on the device; on CUDA with bf16 autocast and channels_last images (issue 5, item 9)."""
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        if self.device.type != "cuda":
            if dropout_masks is not None:
                return module(blobs=blobs, dropout_masks=dropout_masks, **inputs)
            return module(blobs=blobs, **inputs)
        inputs = {k: (v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v)
                  for k, v in inputs.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = module(blobs=blobs, dropout_masks=dropout_masks, **inputs)
        return {k: v.float() for k, v in out.items()}

    def loss(self, x: torch.Tensor, y: torch.Tensor, dropout_masks: dict | None = None) -> torch.Tensor:
        """Caffe's objective of the train net (sum of loss_weight x loss over its loss layers). ``dropout_masks``:
        ``{Dropout layer: 0/1 tensor}`` drawn by the caller (the device path draws them from the unit's generator)."""
        out = self._run(self.train_module, None, dropout_masks=dropout_masks, data=x, label=y)
        return self.train_module.loss(out)

    def blobs(self, x: torch.Tensor, names) -> dict:
        return self._run(self.test_module, list(names), **{self.input_name: x})

    def prob1(self, x: torch.Tensor) -> torch.Tensor:
        """P(class 1) from the deploy net's softmax."""
        p = self.blobs(x, [self.output])[self.output]
        return p.reshape(p.shape[0], -1)[:, 1]


def make_solver(spec: NetSpec, module, settings: TrainSettings, iters_per_epoch: int):
    """``models.CaffeSGD`` from solver.prototxt with the experiment's lr and the paper's step policy."""
    import models

    if spec.solver is not None and Path(spec.solver).exists():
        sp = models.read_solver_text(spec.solver)
    else:
        from models.schema import pb

        sp = pb.SolverParameter(momentum=0.9, weight_decay=0.0005)
    sp.base_lr = settings.base_lr
    sp.lr_policy = "step"
    if settings.gamma is not None:
        sp.gamma = settings.gamma
    sp.max_iter = settings.epochs * iters_per_epoch
    sp.stepsize = max(1, (settings.step_epochs * iters_per_epoch) if settings.step_epochs else sp.max_iter)
    return models.CaffeSGD(module.param_groups(), sp, module)


# ----------------------------------------------------------------------------------------------- data
def prepare(patches: np.ndarray, spec: NetSpec, rng: np.random.Generator | None) -> torch.Tensor:
    """Patches (N, 3, S, S) -> net input, as Caffe's DataTransformer (data_transformer.cpp) would: resize to
    ``spec.resize`` (replicate.cohort.preprocess.to_net_input, which also subtracts the mean for the ImageNet style),
    then crop ``input_size`` at a random offset and mirror at random in TRAIN (``rng`` given), centre crop in TEST."""
    from replicate.cohort.preprocess import to_net_input

    side = spec.resize or spec.input_size
    big = to_net_input(patches, side, style=spec.style)
    if spec.scale != 1.0:
        big = big * np.float32(spec.scale)
    c = spec.input_size
    if side == c and not (spec.mirror and rng is not None):
        return torch.from_numpy(np.ascontiguousarray(big))
    span = side - c
    out = np.empty((len(big), big.shape[1], c, c), dtype=np.float32)
    for i in range(len(big)):
        if rng is None:
            oy = ox = span // 2
            flip = False
        else:
            oy, ox = (int(v) for v in rng.integers(0, span + 1, size=2))
            flip = bool(spec.mirror and rng.integers(0, 2))
        crop = big[i, :, oy:oy + c, ox:ox + c]
        out[i] = crop[:, :, ::-1] if flip else crop
    return torch.from_numpy(out)


@dataclass
class FoldData:
    """Row numbers into the patch store for one fold."""

    train_rows: np.ndarray         # role "train" patches of the training patients
    train_labels: np.ndarray
    score_rows: np.ndarray         # role "test" patches of every patient in the fold (both sides)
    score_patients: np.ndarray     # their patient ids
    labels: dict                   # patient id -> label


def fold_data(index, fold: Fold, rows: np.ndarray | None = None, max_train_auc_patients: int | None = None
              ) -> FoldData:
    """Split a patch index (replicate.cohort.patches.PatchStore.index, optionally restricted to ``rows``).

    ``max_train_auc_patients`` (smoke preset only): score only the first k training patients of each class (by
    id) for the training AUC, to save forward passes."""
    idx = index if rows is None else index.iloc[rows]
    pos = np.arange(len(index)) if rows is None else np.asarray(rows)
    pid = idx["patient_id"].astype(str).to_numpy()
    role = idx["role"].to_numpy()
    train_set, test_set = set(fold.train_ids), set(fold.test_ids)
    labels = dict(zip(pid, idx["label"].astype(int).to_numpy()))
    in_train = np.isin(pid, list(train_set))
    scored_train = in_train
    if max_train_auc_patients is not None:
        keep = [p for c in (0, 1) for p in sorted(p for p in train_set if labels.get(p) == c)[:max_train_auc_patients]]
        scored_train = np.isin(pid, keep)
    in_test = np.isin(pid, list(test_set))
    tr = pos[in_train & (role == "train")]
    sc = pos[(scored_train | in_test) & (role == "test")]
    if len(tr) == 0:
        raise ReplicateError(f"repeat {fold.repeat} fold {fold.fold}: no training patches")
    return FoldData(tr, index["label"].to_numpy()[tr].astype(int), sc,
                    index["patient_id"].astype(str).to_numpy()[sc], labels)


def split_auc(fold: Fold, scores, labels: dict):
    """(train AUC, test ids, test labels, test scores) from per-patient scores."""
    tr = [p for p in fold.train_ids if p in scores.index]
    te = [p for p in fold.test_ids if p in scores.index]
    train_auc = auc([labels[p] for p in tr], scores[tr].to_numpy())
    return train_auc, te, [int(labels[p]) for p in te], [float(v) for v in scores[te].to_numpy()]


# ----------------------------------------------------------------------------------------------- loop
@torch.no_grad()
def score_patches(pair: NetPair, store, rows: np.ndarray, spec: NetSpec, batch: int) -> np.ndarray:
    """P(class 1) per patch from the TEST-phase module (centre crop, no mirror)."""
    out = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(rows), batch):
        r = np.asarray(rows[s:s + batch])
        x = prepare(np.asarray(store.patches[r]), spec, None)
        out[s:s + len(r)] = pair.prob1(x).float().cpu().numpy()
    return out


def train_fold(spec: NetSpec, store, fold: Fold, data: FoldData, settings: TrainSettings, seed: int,
               device: torch.device, progress=None) -> FoldResult:
    """Train one net on one fold; per-epoch train/test AUC; final out-of-fold patient scores.

    One epoch = ceil(training patches / batch) Caffe iterations over a fresh permutation (capped by
    ``max_iters_per_epoch`` in the smoke preset). Patients are scored after every epoch (Figure 2's curves).
    On CUDA this is :func:`train_folds_packed` with one job (the device path); on CPU the host path below."""
    if device.type == "cuda":
        return train_folds_packed([TrainJob(spec, store, fold, data, settings, seed)], device,
                                  progress=progress)[0]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bs = settings.batch_size
    iters, mult = _iters_and_new_lr_mult(spec, data, settings)
    pair = NetPair(spec, bs, seed, device, new_lr_mult=mult)
    solver = make_solver(spec, pair.train_module, settings, iters)
    curves = {"epoch": [], "train_auc": [], "test_auc": [], "loss": [], "lr": []}
    scores = None
    for epoch in range(settings.epochs):
        order = rng.permutation(len(data.train_rows))
        losses = []
        for it in range(iters):
            sel = order[it * bs:(it + 1) * bs]
            if len(sel) < bs:  # Caffe's data layer wraps around: top the batch up from the start
                sel = np.concatenate([sel, order[:bs - len(sel)]])[:bs]
                if len(sel) < bs:
                    sel = np.resize(order, bs)
            rows = data.train_rows[sel]
            x = prepare(np.asarray(store.patches[rows]), spec, rng)
            y = torch.from_numpy(data.train_labels[sel]).long()
            solver.zero_grad(set_to_none=True)
            loss = pair.loss(x, y)
            if not torch.isfinite(loss):
                raise ReplicateError(f"{spec.key} repeat {fold.repeat} fold {fold.fold} epoch {epoch + 1}: "
                                     f"loss is {loss.item()} (diverged)")
            loss.backward()
            lr = solver.step()
            losses.append(float(loss.detach()))
        s = score_patches(pair, store, data.score_rows, spec, settings.eval_batch)
        scores = patient_scores(data.score_patients, s)
        tr_auc, te, te_y, te_s = split_auc(fold, scores, data.labels)
        curves["epoch"].append(epoch + 1)
        curves["train_auc"].append(tr_auc)
        curves["test_auc"].append(auc(te_y, te_s) if len(set(te_y)) == 2 else float("nan"))
        curves["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        curves["lr"].append(float(lr) if losses else float("nan"))
        if progress is not None:
            progress.update(1)
    tr_auc, te, te_y, te_s = split_auc(fold, scores, data.labels)
    extra = {"curves": curves, "iters_per_epoch": iters, "batch_size": bs,
             "n_train_patches": int(len(data.train_rows))}
    if pair.weights_report is not None:
        extra["weights"] = {k: len(v) for k, v in pair.weights_report.items()}
    return FoldResult(fold.repeat, fold.fold, te, te_y, te_s, tr_auc, extra)


# ----------------------------------------------------------------------------------------------- device path
@dataclass
class DeviceOptions:
    """Settings of the device path (issue 11, item 2).

    ``store_fraction``: the share of the device's free memory the resident patch store may take (a paper-sized
    store of 120 px patches is ~7.7 GB); beyond it patches stay in pinned host memory and are copied per batch
    (one host synchronisation per iteration). ``eval_batch``: scoring batch (TEST phase: no effect on scores beyond
    floating-point order). ``compile``: ``torch.compile`` the train module (optional; off by default)."""

    store_fraction: float = 0.5
    eval_batch: int = 512
    compile: bool = False
    cudnn_benchmark: bool = True


def configure_device(device: torch.device, options: DeviceOptions | None = None) -> None:
    """``torch.backends.cudnn.benchmark`` (fixed input shapes: let cuDNN pick its fastest algorithms) on CUDA."""
    options = options or DeviceOptions()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(options.cudnn_benchmark)


class DevicePatches:
    """A patch store's ``patches`` (N, 3, S, S) float32 held as one tensor on ``device`` (uploaded once, in
    chunks from the memmap) when it fits in ``fraction`` of the free device memory, else in pinned host memory.
    ``rows[i]`` of the store is ``tensor[i]``. Raises nothing for a store that does not fit: it stays on the host
    (``resident`` False) and each batch is copied over."""

    _cache: dict = {}

    def __init__(self, patches, device: torch.device, fraction: float = 0.5, chunk: int = 4096):
        self.device = device
        n = len(patches)
        nbytes = int(np.prod(patches.shape)) * 4
        self.resident = device.type != "cuda"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            self.resident = nbytes <= fraction * free
        where = device if self.resident else torch.device("cpu")
        self.tensor = torch.empty(tuple(patches.shape), dtype=torch.float32, device=where)
        for s in range(0, n, chunk):
            part = torch.from_numpy(np.ascontiguousarray(patches[s:s + chunk], dtype=np.float32))
            self.tensor[s:s + len(part)].copy_(part, non_blocking=False)
        if not self.resident and device.type == "cuda":
            self.tensor = self.tensor.pin_memory()

    @classmethod
    def of(cls, store, device: torch.device, fraction: float = 0.5) -> "DevicePatches":
        """One upload per (store, device) in this process, shared by every unit (and packed units) using it."""
        key = (getattr(store, "key", None) or id(store), str(getattr(store, "path", "")), str(device))
        if key not in cls._cache:
            cls._cache[key] = cls(store.patches, device, fraction)
        return cls._cache[key]

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """Patches at store rows ``idx`` (a long tensor on the device) as a device tensor (B, 3, S, S)."""
        if self.resident:
            return self.tensor.index_select(0, idx)
        return self.tensor.index_select(0, idx.cpu()).to(self.device, non_blocking=True)


def device_prepare(x: torch.Tensor, spec: NetSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`prepare` on a device tensor: (B, 3, S, S) patches -> (B, 3, c, c) net input.

    Resize with ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``, the same half-pixel
    bilinear rule as cv2's INTER_LINEAR used by ``to_net_input``; the same clip, scale and BGR mean; then the
    centre crop (``generator`` None) or, per image, a crop offset uniform in [0, side - c] for each axis and a
    mirror with probability 1/2 when ``spec.mirror`` (Caffe's DataTransformer), drawn from ``generator`` on the
    tensor's device (no host round trip)."""
    from replicate.cohort.preprocess import HIGH, IMAGENET_MEAN_BGR, LOW

    side = spec.resize or spec.input_size
    x = x.float()
    if x.shape[-1] != side or x.shape[-2] != side:
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                                            antialias=False)
    v = ((x - LOW) / (HIGH - LOW)).clamp_(0.0, 1.0)
    v = v * 255.0
    if spec.style == "imagenet":
        v = v - torch.tensor(IMAGENET_MEAN_BGR, dtype=v.dtype, device=v.device)[None, :, None, None]
    if spec.scale != 1.0:
        v = v * spec.scale
    c = spec.input_size
    span = side - c
    if generator is None:
        o = span // 2
        return v[:, :, o:o + c, o:o + c].contiguous()
    b = v.shape[0]
    if span == 0 and not spec.mirror:
        return v.contiguous()
    off = torch.randint(0, span + 1, (b, 2), generator=generator, device=v.device)
    ar = torch.arange(c, device=v.device)
    rows = off[:, :1] + ar[None, :]
    cols = off[:, 1:] + ar[None, :]
    if spec.mirror:
        flip = torch.randint(0, 2, (b, 1), generator=generator, device=v.device).bool()
        cols = torch.where(flip, off[:, 1:] + (c - 1 - ar)[None, :], cols)
    bi = torch.arange(b, device=v.device)[:, None, None, None]
    ci = torch.arange(v.shape[1], device=v.device)[None, :, None, None]
    return v[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def dropout_masks(net, generator: torch.Generator, device: torch.device) -> dict:
    """A Bernoulli(1 - ratio) 0/1 mask for every Dropout layer of a TRAIN net at its batch (dropout_layer.cpp),
    drawn from ``generator`` (the unit's own), so that units packed together draw independently of each other."""
    out = {}
    for layer in net.layers:
        if layer.type == "Dropout":
            keep = 1.0 - float(layer.proto.dropout_param.dropout_ratio)
            shape = tuple(layer.top_shapes[0])
            out[layer.name] = torch.bernoulli(torch.full(shape, keep, device=device), generator=generator)
    return out


def caffe_sgd_step(solver) -> float:
    """``solver.step()`` (models.CaffeSGD: Caffe's SGDSolver::ApplyUpdate) with the per-parameter loop done by
    ``torch._foreach_*`` kernels, a few launches per parameter group instead of ~5 per parameter (the small nets
    are launch-bound on a GPU). The same operations in the same order: ``g += decay * w``; ``h = momentum * h +
    rate * g``; ``w -= h``, with Caffe's float32 rate x lr_mult and decay x decay_mult. Falls back to
    ``solver.step()`` where the fast form does not apply (gradient clipping, L1, iter_size > 1). Returns the rate."""
    from models.solver import learning_rate

    sp = solver.sp
    if float(sp.clip_gradients) >= 0 or sp.regularization_type != "L2" or solver.iter_size != 1:
        return solver.step()
    rate, solver.current_step = learning_rate(sp, solver.iter, solver.current_step)
    momentum, wd = float(sp.momentum), float(sp.weight_decay)
    with torch.no_grad():
        for group in solver.param_groups:
            params = list(group["params"])
            if not params:
                continue
            local_rate = float(np.float32(rate) * np.float32(group["lr_mult"]))
            local_decay = float(np.float32(wd) * np.float32(group["decay_mult"]))
            grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
            if local_decay:
                torch._foreach_add_(grads, params, alpha=local_decay)
            hists = []
            for p in params:
                st = solver.state[p]
                if st.get("history") is None:
                    st["history"] = torch.zeros_like(p)
                hists.append(st["history"])
            torch._foreach_mul_(hists, momentum)
            torch._foreach_add_(hists, grads, alpha=local_rate)
            torch._foreach_sub_(params, hists)
    solver.iter += 1
    return rate


@dataclass
class TrainJob:
    """The arguments of one :func:`train_fold` (one unit)."""

    spec: NetSpec
    store: object
    fold: Fold
    data: FoldData
    settings: TrainSettings
    seed: int


def _iters_and_new_lr_mult(spec, data, settings) -> tuple[int, float | None]:
    """Iterations per epoch (ceil of training rows / batch, capped by ``max_iters_per_epoch``) and the lr multiplier
    of the re-initialised layers (``last_lr / base_lr``; 10x when ``last_lr`` is unset), shared by both paths."""
    iters = math.ceil(len(data.train_rows) / settings.batch_size)
    if settings.max_iters_per_epoch:
        iters = min(iters, settings.max_iters_per_epoch)
    mult = None
    if spec.new_layers:
        mult = (settings.last_lr if settings.last_lr is not None else settings.base_lr * 10) / settings.base_lr
    return iters, mult


def _job_steps(job: TrainJob, device: torch.device, options: DeviceOptions, progress=None):
    """A generator running one unit on the device path: it yields after every iteration and after every epoch's
    scoring, and returns (StopIteration.value) the unit's FoldResult. Every random draw comes from the unit's own
    ``torch.Generator`` seeded with ``job.seed``; nothing reads or advances torch's global generator."""
    spec, fold, data, settings = job.spec, job.fold, job.data, job.settings
    gen = torch.Generator(device=device).manual_seed(int(job.seed))
    bs = settings.batch_size
    iters, mult = _iters_and_new_lr_mult(spec, data, settings)
    pair = NetPair(spec, bs, job.seed, device, new_lr_mult=mult)
    if options.compile and device.type == "cuda":
        pair.train_module.forward = torch.compile(pair.train_module.forward, dynamic=False)
    solver = make_solver(spec, pair.train_module, settings, iters)
    patches = DevicePatches.of(job.store, device, options.store_fraction)
    train_rows = torch.as_tensor(np.asarray(data.train_rows), dtype=torch.long, device=device)
    train_labels = torch.as_tensor(np.asarray(data.train_labels), dtype=torch.long, device=device)
    score_rows = torch.as_tensor(np.asarray(data.score_rows), dtype=torch.long, device=device)
    n = len(data.train_rows)
    curves = {"epoch": [], "train_auc": [], "test_auc": [], "loss": [], "lr": []}
    scores = None
    lr = float("nan")
    yield
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros((), device=device)
        for it in range(iters):
            # Caffe's data layer wraps around: a short last batch is topped up from the start of the permutation
            sel = order[torch.arange(it * bs, (it + 1) * bs, device=device) % n]
            x = device_prepare(patches.take(train_rows[sel]), spec, gen)
            y = train_labels[sel]
            masks = dropout_masks(pair.train_net, gen, device)
            solver.zero_grad(set_to_none=True)
            loss = pair.loss(x, y, dropout_masks=masks)
            loss.backward()
            lr = caffe_sgd_step(solver)
            loss_sum += loss.detach()
            yield
        mean_loss = float(loss_sum) / iters if iters else float("nan")   # one synchronisation an epoch
        if not math.isfinite(mean_loss):
            raise ReplicateError(f"{spec.key} repeat {fold.repeat} fold {fold.fold} epoch {epoch + 1}: "
                                 f"mean loss is {mean_loss} (diverged)")
        s = score_patches_device(pair, patches, score_rows, spec, options.eval_batch)
        scores = patient_scores(data.score_patients, s)
        tr_auc, te, te_y, te_s = split_auc(fold, scores, data.labels)
        curves["epoch"].append(epoch + 1)
        curves["train_auc"].append(tr_auc)
        curves["test_auc"].append(auc(te_y, te_s) if len(set(te_y)) == 2 else float("nan"))
        curves["loss"].append(mean_loss)
        curves["lr"].append(float(lr))
        if progress is not None:
            progress.update(1)
        yield
    tr_auc, te, te_y, te_s = split_auc(fold, scores, data.labels)
    extra = {"curves": curves, "iters_per_epoch": iters, "batch_size": bs,
             "n_train_patches": int(len(data.train_rows)), "device_path": True,
             "store_resident": bool(patches.resident)}
    if pair.weights_report is not None:
        extra["weights"] = {k: len(v) for k, v in pair.weights_report.items()}
    return FoldResult(fold.repeat, fold.fold, te, te_y, te_s, tr_auc, extra)


@torch.no_grad()
def score_patches_device(pair: NetPair, patches: DevicePatches, rows: torch.Tensor, spec: NetSpec,
                         batch: int) -> np.ndarray:
    """P(class 1) per patch (centre crop) in batches of ``batch`` on the device; one copy to the host at the end."""
    out = []
    for s in range(0, len(rows), batch):
        out.append(pair.prob1(device_prepare(patches.take(rows[s:s + batch]), spec, None)).float())
    return torch.cat(out).double().cpu().numpy() if out else np.empty(0)


def train_folds_packed(jobs: list[TrainJob], device: torch.device, options: DeviceOptions | None = None,
                       progress=None) -> list[FoldResult]:
    """Train several units at once on one device (packing small nets onto one GPU), round-robin one iteration
    of each in turn, each unit on its own CUDA stream so their kernels overlap. Returns their FoldResults in
    ``jobs`` order.

    Each unit's numbers are unchanged by the packing: a unit's random draws come only from its own generator and
    its tensors are its own, so ``train_folds_packed([a, b]) == [train_folds_packed([a])[0],
    train_folds_packed([b])[0]]`` (tested on CPU, where it holds bit for bit; on CUDA up to cuDNN's algorithm
    choice, which ``cudnn.benchmark`` may make per stream)."""
    options = options or DeviceOptions()
    configure_device(device, options)
    streams = [torch.cuda.Stream(device=device) if device.type == "cuda" else None for _ in jobs]
    gens = []
    for job, st in zip(jobs, streams):
        with (torch.cuda.stream(st) if st is not None else _nullcontext()):
            g = _job_steps(job, device, options, progress)
            next(g)                                     # build the nets, upload the store
        gens.append(g)
    results: list = [None] * len(jobs)
    live = list(range(len(jobs)))
    while live:
        for i in list(live):
            with (torch.cuda.stream(streams[i]) if streams[i] is not None else _nullcontext()):
                try:
                    next(gens[i])
                except StopIteration as stop:
                    results[i] = stop.value
                    live.remove(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return results


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
