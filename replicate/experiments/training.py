"""Training from scratch and fine-tuning with Caffe's SGD solver (Zhu et al. 2019, "Training from Scratch",
"Transfer Learning", Table 2; Caffe: src/caffe/solvers/sgd_solver.cpp through ``models.CaffeSGD``).

One call of :func:`train_fold` trains one net on the training patients of one fold and scores patients after every
epoch, giving the per-epoch training and test AUC curves of Figure 2 and the final out-of-fold patient scores.

- Nets: ``prototxt/<net>/train_val.prototxt`` in TRAIN phase (its loss layers, GoogLeNet's auxiliary heads with
  loss_weight 0.3 included; Caffe's objective via ``CaffeModule.loss``) is trained; ``deploy.prototxt`` in TEST
  phase (dropout off) shares its parameters by layer name and scores the patches, as Caffe's test net does.
  Parameters start from Caffe's fillers (``models.to_torch``, seeded) or an ImageNet caffemodel.
- Input: the TRAIN data layer's ``transform_param`` (crop_size, mirror, mean) and ``batch_size`` are honoured the
  way Caffe's DataTransformer applies them (random crop and mirror in TRAIN, centre crop in TEST); the mean is
  subtracted by ``replicate.cohort.preprocess.to_net_input(style="imagenet")`` when the layer declares one.
- Transfer learning (paper: "the output dimension of the last fully connected layer was changed from 1000 to 2,
  and the weights in this layer were re-initialized randomly ... learning rate of the last fully connected layer
  was set to 0.001 ... (0.0001)" for all the other layers): ``prototxt/{googlenet_transfer,vgg16}`` carry renamed
  2-way layers (Caffe's fine-tuning convention: a renamed layer is not copied from the caffemodel); their
  ``lr_mult`` is set to ``last_lr / base_lr`` (the Figure 2 row 2 sweep). Patches are resized to 256 and a random
  224 crop is taken every iteration (paper: "randomly cropped ... in each epoch"); centre crop when scoring.
- Solver: ``solver.prototxt``'s momentum and weight decay; ``base_lr`` from the experiment; ``lr_policy: "step"``,
  ``gamma: 0.5``, ``stepsize`` = 5 epochs of iterations (Table 2: "reduced 50% after each 5 epochs").
- Scores: the softmax probability of class 1 (luminal A) per patch, averaged per patient (protocol.patient_scores).
- Device: CUDA with bf16 autocast and channels_last when requested, else CPU float32.
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

    def _run(self, module, blobs, **inputs):
        """Forward on the device; on CUDA with bf16 autocast and channels_last images (issue 5, item 9)."""
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        if self.device.type != "cuda":
            return module(blobs=blobs, **inputs)
        inputs = {k: (v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v)
                  for k, v in inputs.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = module(blobs=blobs, **inputs)
        return {k: v.float() for k, v in out.items()}

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Caffe's objective of the train net (sum of loss_weight x loss over its loss layers)."""
        out = self._run(self.train_module, None, data=x, label=y)
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
    ``max_iters_per_epoch`` in the smoke preset). Patients are scored after every epoch (Figure 2's curves)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bs = settings.batch_size
    iters = math.ceil(len(data.train_rows) / bs)
    if settings.max_iters_per_epoch:
        iters = min(iters, settings.max_iters_per_epoch)
    mult = None
    if spec.new_layers:
        mult = (settings.last_lr if settings.last_lr is not None else settings.base_lr * 10) / settings.base_lr
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
