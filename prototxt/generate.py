"""Write every net and solver under ``prototxt/`` (Caffe text format, current ``layer {}`` syntax).

The checked-in ``.prototxt`` files are the source of truth for the rest of the project; this script is how they
were made, so that the ~60 Inception layers of GoogLeNet are written by a loop rather than by hand, and so that
one choice (a batch size, a guessed weight decay) is made in one place. Run it from the repository root::

    python prototxt/generate.py          # (re)write all files
    python prototxt/generate.py --check  # exit 1 if any checked-in file differs from what it would write

``compare/test_architecture.py`` runs the ``--check`` comparison, so a hand edit to a generated file fails the
tests: edit this script instead and regenerate.

Sources (every number below is one of these or is marked GUESS in the file it ends up in):

- Zhu et al. 2019 (``../shared/paper/zhu2019.md``): "Training from Scratch" (GoogleNet_R, VGG_R, CIFAR changes),
  "Transfer Learning" (last layer re-initialised, lr 0.001 = 10 x 0.0001, 256 -> random 224 crop), Table 2
  (base_lr 0.0001, "step" policy halving every 5 epochs, L2 + dropout), "Methods Overview" (40 epochs, Caffe),
  "MR Imaging Pre-processing" (44660 patches per patch size over 270 patients), "Model Evaluation" (10-fold CV,
  25 patches per test patient).
- BVLC Caffe ``models/bvlc_googlenet/{deploy,train_val,quick_solver}.prototxt`` (GoogLeNet layout, xavier
  weights, constant 0.2 biases, LRN, aux classifiers with loss_weight 0.3, weight_decay 0.0002, momentum 0.9).
- BVLC Caffe ``examples/cifar10/cifar10_full_train_test.prototxt`` and ``cifar10_full_solver.prototxt``.
- ``VGG_ILSVRC_16_layers_deploy.prototxt`` (Simonyan & Zisserman, the Caffe model zoo gist 211839e770f7b538e2d8).
- The Table 2 readings (``*_table2``): found by ``python -m models audit --search`` (``models/audit.py``); see
  ``docs/deviations.md``.

Only the standard library is used.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------------------------
# Training-set size and the solver arithmetic (Table 2: "reduced 50% after each 5 epochs"; 40 epochs).
# --------------------------------------------------------------------------------------------------------------
PATCHES_PER_PATCH_SIZE = 44660          # paper, "MR Imaging Pre-processing": 33.1 regions x 5 x 270 patients
CV_FOLDS = 10                           # paper, "Model Evaluation"
TRAIN_PATCHES = PATCHES_PER_PATCH_SIZE * (CV_FOLDS - 1) // CV_FOLDS   # 40194: nine folds of ten train
BATCH = 32                              # GUESS: the paper is silent; BVLC GoogLeNet's train batch (fits a GTX 1080)
TEST_BATCH = 25                         # 25 patches per test patient (paper, "Model Evaluation")
EPOCHS = 40                             # paper, "Methods Overview"
STEP_EPOCHS = 5                         # Table 2 caption


def iterations(epochs: int, train_patches: int = TRAIN_PATCHES, batch: int = BATCH) -> int:
    """Caffe iterations covering ``epochs`` passes over ``train_patches`` at ``batch`` (rounded up)."""
    return math.ceil(epochs * train_patches / batch)


STEPSIZE = iterations(STEP_EPOCHS)      # 6281
MAX_ITER = iterations(EPOCHS)           # 50243

GOOGLENET_MEAN = (104, 117, 123)              # bvlc_googlenet/train_val.prototxt transform_param
VGG_MEAN = (103.939, 116.779, 123.68)         # VGG_ILSVRC_16_layers readme (BGR)

# --------------------------------------------------------------------------------------------------------------
# Text emitters: one function per layer kind, returning Caffe text format.
# --------------------------------------------------------------------------------------------------------------


class Enum(str):
    """A protobuf enum value (``MAX``, ``TRAIN``, ``LMDB``): written bare, where plain strings are quoted."""


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v) if isinstance(v, float) else str(v)


def block(name: str, fields: list, indent: int = 0) -> str:
    """``name { ... }`` with ``fields`` a list of (key, value) where value is a scalar or a nested field list.
    A key ``#`` emits a comment line."""
    pad = "  " * indent
    out = [f"{pad}{name} {{"]
    out += _fields(fields, indent + 1)
    out.append(f"{pad}}}")
    return "\n".join(out)


def _fields(fields: list, indent: int) -> list[str]:
    pad = "  " * indent
    out = []
    for key, value in fields:
        if key == "#":
            out += [f"{pad}# {line}" if line else f"{pad}#" for line in value.split("\n")]
        elif isinstance(value, list):
            out.append(block(key, value, indent))
        else:
            out.append(f"{pad}{key}: {_fmt(value)}")
    return out


def layer(name, type_, bottoms=(), tops=(), body=(), comment=None) -> str:
    fields = [("#", comment)] if comment else []
    fields += [("name", name), ("type", type_)]
    fields += [("bottom", b) for b in bottoms] + [("top", t) for t in tops]
    fields += list(body)
    return block("layer", fields)


def filler(kind, value=None, std=None):
    f = [("type", kind)]
    if value is not None:
        f.append(("value", value))
    if std is not None:
        f.append(("std", std))
    return f


XAVIER, BIAS_02, BIAS_0 = filler("xavier"), filler("constant", 0.2), filler("constant", 0)


def params(lr=(1, 2), decay=(1, 0)):
    """Two ``param {}`` blocks (weights, bias): BVLC's lr_mult 1/2, decay_mult 1/0 by default; none when
    ``lr`` is None (Caffe's defaults, lr_mult 1 and decay_mult 1 for both blobs)."""
    out = []
    if lr is None:
        return out
    for lr_mult, decay_mult in zip(lr, decay):
        p = [("lr_mult", lr_mult)]
        if decay_mult is not None:
            p.append(("decay_mult", decay_mult))
        out.append(("param", p))
    return out


def conv(name, bottom, num_output, kernel, pad=0, stride=1, top=None, weight=XAVIER, bias=BIAS_02,
         lr=(1, 2), decay=(1, 0), comment=None):
    cp = [("num_output", num_output)]
    if pad:
        cp.append(("pad", pad))
    cp.append(("kernel_size", kernel))
    if stride != 1:
        cp.append(("stride", stride))
    cp += [("weight_filler", weight), ("bias_filler", bias)]
    return layer(name, "Convolution", [bottom], [top or name], params(lr, decay) + [("convolution_param", cp)],
                 comment)


def inner_product(name, bottom, num_output, top=None, weight=XAVIER, bias=BIAS_0, lr=(1, 2), decay=(1, 0),
                  comment=None):
    ip = [("num_output", num_output), ("weight_filler", weight), ("bias_filler", bias)]
    return layer(name, "InnerProduct", [bottom], [top or name], params(lr, decay) + [("inner_product_param", ip)],
                 comment)


def relu(name, blob):
    return layer(name, "ReLU", [blob], [blob])


def pool(name, bottom, kind, kernel=None, stride=1, pad=0, top=None, global_pooling=False, comment=None):
    pp = [("pool", Enum(kind))]
    if global_pooling:
        pp.append(("global_pooling", True))
    else:
        pp.append(("kernel_size", kernel))
        pp.append(("stride", stride))
        if pad:
            pp.append(("pad", pad))
    return layer(name, "Pooling", [bottom], [top or name], [("pooling_param", pp)], comment)


def lrn(name, bottom, local_size, alpha, beta, within_channel=False, top=None):
    lp = [("local_size", local_size), ("alpha", alpha), ("beta", beta)]
    if within_channel:
        lp.append(("norm_region", Enum("WITHIN_CHANNEL")))
    return layer(name, "LRN", [bottom], [top or name], [("lrn_param", lp)])


def dropout(name, blob, ratio, comment=None):
    return layer(name, "Dropout", [blob], [blob], [("dropout_param", [("dropout_ratio", ratio)])], comment)


def input_layer(shape, comment=None):
    return layer("data", "Input", [], ["data"],
                 [("input_param", [("shape", [("dim", d) for d in shape])])], comment)


def data_layers(crop=None, mean=None, mirror_train=False, comment=None):
    """TRAIN and TEST ``Data`` layers; the sources are placeholders (``replicate/`` feeds arrays, not LMDBs)."""
    out = []
    for phase, source, batch, mirror in (("TRAIN", "PLACEHOLDER/train_lmdb", BATCH, mirror_train),
                                         ("TEST", "PLACEHOLDER/test_lmdb", TEST_BATCH, False)):
        tp = []
        if mirror:
            tp.append(("mirror", True))
        if crop:
            tp.append(("crop_size", crop))
        tp += [("mean_value", m) for m in (mean or ())]
        body = [("include", [("phase", Enum(phase))])]
        if tp:
            body.append(("transform_param", tp))
        body.append(("data_param", [("source", source), ("batch_size", batch), ("backend", Enum("LMDB"))]))
        out.append(layer("data", "Data", [], ["data", "label"], body, comment if phase == "TRAIN" else None))
    return out


def loss(name, bottom, top, weight=None):
    body = [("loss_weight", weight)] if weight is not None else []
    return layer(name, "SoftmaxWithLoss", [bottom, "label"], [top], body)


def accuracy(name, bottom, top):
    return layer(name, "Accuracy", [bottom, "label"], [top], [("include", [("phase", Enum("TEST"))])])


def softmax(bottom):
    return layer("prob", "Softmax", [bottom], ["prob"])


def net_text(name: str, header: str, layers: list[str]) -> str:
    comments = "\n".join(f"# {line}" if line else "#" for line in header.strip("\n").split("\n"))
    return f"{comments}\nname: \"{name}\"\n" + "\n".join(layers) + "\n"


# --------------------------------------------------------------------------------------------------------------
# GoogLeNet (Szegedy et al. 2015; BVLC models/bvlc_googlenet) and its reductions.
# --------------------------------------------------------------------------------------------------------------
# name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj  (Szegedy et al. 2015, Table 1)
INCEPTION = [("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), "pool3/3x3_s2",
             ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64), ("4c", 128, 128, 256, 24, 64, 64),
             ("4d", 112, 144, 288, 32, 64, 64), ("4e", 256, 160, 320, 32, 128, 128), "pool4/3x3_s2",
             ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)]
AUX_AFTER = {"4a": "loss1", "4d": "loss2"}


def inception(name: str, bottom: str, n1, n3r, n3, n5r, n5, npp) -> list[str]:
    p = f"inception_{name}/"
    out = [conv(p + "1x1", bottom, n1, 1), relu(p + "relu_1x1", p + "1x1"),
           conv(p + "3x3_reduce", bottom, n3r, 1), relu(p + "relu_3x3_reduce", p + "3x3_reduce"),
           conv(p + "3x3", p + "3x3_reduce", n3, 3, pad=1), relu(p + "relu_3x3", p + "3x3"),
           conv(p + "5x5_reduce", bottom, n5r, 1), relu(p + "relu_5x5_reduce", p + "5x5_reduce"),
           conv(p + "5x5", p + "5x5_reduce", n5, 5, pad=2), relu(p + "relu_5x5", p + "5x5"),
           pool(p + "pool", bottom, "MAX", 3, 1, pad=1),
           conv(p + "pool_proj", p + "pool", npp, 1), relu(p + "relu_pool_proj", p + "pool_proj"),
           layer(p + "output", "Concat", [p + "1x1", p + "3x3", p + "5x5", p + "pool_proj"], [p + "output"])]
    return out


def aux_classifier(prefix: str, bottom: str, num_classes: int, classifier: str, lr_last=(1, 2),
                   phase_test_accuracy=True) -> list[str]:
    """BVLC's auxiliary head (train_val only): 5x5/3 AVE pool, 1x1 conv 128, fc 1024, dropout 0.7, classifier,
    SoftmaxWithLoss with loss_weight 0.3 (Szegedy et al. 2015, section 5)."""
    p = prefix + "/"
    out = [pool(p + "ave_pool", bottom, "AVE", 5, 3),
           conv(p + "conv", p + "ave_pool", 128, 1), relu(p + "relu_conv", p + "conv"),
           inner_product(p + "fc", p + "conv", 1024, bias=BIAS_02), relu(p + "relu_fc", p + "fc"),
           dropout(p + "drop_fc", p + "fc", 0.7),
           inner_product(classifier, p + "fc", num_classes, top=classifier, lr=lr_last),
           loss(p + "loss", classifier, p + prefix, weight=0.3)]
    if phase_test_accuracy:
        out.append(accuracy(p + "top-1", classifier, p + "top-1"))
    return out


def googlenet_layers(*, c1=64, k1=7, p1=3, s1=2, pool1_stride=2, num_classes=2, classifier="loss3/classifier",
                     lr_last=(1, 2), aux=False, aux_classifiers=("loss1/classifier", "loss2/classifier"),
                     pool5="bvlc", dropout_ratio=0.4, notes=None) -> list[str]:
    """The BVLC GoogLeNet layer list from conv1 to the classifier (no input/data layers, no loss/prob).

    ``pool5``: ``"bvlc"`` (7x7 AVE stride 1), ``"none"`` (the classifier sees inception_5b/output as is).
    ``notes``: optional dict layer name -> comment placed above that layer.
    """
    notes = notes or {}
    out = [conv("conv1/7x7_s2", "data", c1, k1, pad=p1, stride=s1, comment=notes.get("conv1/7x7_s2")),
           relu("conv1/relu_7x7", "conv1/7x7_s2"),
           pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, pool1_stride, comment=notes.get("pool1/3x3_s2")),
           lrn("pool1/norm1", "pool1/3x3_s2", 5, 0.0001, 0.75),
           conv("conv2/3x3_reduce", "pool1/norm1", 64, 1), relu("conv2/relu_3x3_reduce", "conv2/3x3_reduce"),
           conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, pad=1), relu("conv2/relu_3x3", "conv2/3x3"),
           lrn("conv2/norm2", "conv2/3x3", 5, 0.0001, 0.75),
           pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2)]
    bottom = "pool2/3x3_s2"
    aux_names = dict(zip(("4a", "4d"), aux_classifiers))
    for spec in INCEPTION:
        if isinstance(spec, str):
            out.append(pool(spec, bottom, "MAX", 3, 2))
            bottom = spec
            continue
        out += inception(spec[0], bottom, *spec[1:])
        bottom = f"inception_{spec[0]}/output"
        if aux and spec[0] in AUX_AFTER:
            out += aux_classifier(AUX_AFTER[spec[0]], bottom, num_classes, aux_names[spec[0]], lr_last)
    if pool5 == "bvlc":
        out.append(pool("pool5/7x7_s1", bottom, "AVE", 7, 1, comment=notes.get("pool5/7x7_s1")))
        bottom = "pool5/7x7_s1"
    out.append(dropout("pool5/drop_7x7_s1", bottom, dropout_ratio, comment=notes.get("pool5/drop_7x7_s1")))
    out.append(inner_product(classifier, bottom, num_classes, lr=lr_last, comment=notes.get(classifier)))
    return out, classifier


def googlenet_deploy(name, header, size, batch=1, **kw) -> str:
    layers, last = googlenet_layers(**kw)
    return net_text(name, header, [input_layer((batch, 3, size, size))] + layers + [softmax(last)])


def googlenet_train_val(name, header, data_comment, crop=None, mean=None, mirror=False, **kw) -> str:
    layers, last = googlenet_layers(aux=True, **kw)
    tail = [loss("loss3/loss3", last, "loss3/loss3", weight=1), accuracy("loss3/top-1", last, "loss3/top-1")]
    return net_text(name, header, data_layers(crop, mean, mirror, data_comment) + layers + tail)


# --------------------------------------------------------------------------------------------------------------
# VGG16 (Simonyan & Zisserman 2015, configuration D; VGG_ILSVRC_16_layers_deploy.prototxt) and its reductions.
# --------------------------------------------------------------------------------------------------------------
VGG16 = [("conv1_1", 64), ("conv1_2", 64), "pool1", ("conv2_1", 128), ("conv2_2", 128), "pool2",
         ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), "pool3",
         ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), "pool4",
         ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), "pool5"]
VGG_FILLER_W = filler("gaussian", std=0.01)     # GUESS for from-scratch / re-initialised layers: the VGG deploy
VGG_FILLER_B = filler("constant", 0)            # file has no fillers; N(0, 0.01) weights, 0 biases as in the paper


def vgg_layers(*, upto: str = "pool5", fc_bottom: str | None = None, fc=(("fc6", 4096), ("fc7", 4096)),
               num_classes=2, classifier="fc8", lr_last=(1, 2), fillers=True, params_blocks=True,
               notes=None, drop_before_classifier=False) -> tuple[list[str], str]:
    """VGG16 layers up to and including ``upto``, then the FC stack ``fc`` (each with ReLU + dropout 0.5), then
    the classifier. ``fc_bottom`` (default: ``upto``) is the blob the first FC layer reads."""
    notes = notes or {}
    out, bottom = [], "data"
    w, b = (VGG_FILLER_W, VGG_FILLER_B) if fillers else (None, None)
    for spec in VGG16:
        if isinstance(spec, str):
            out.append(pool(spec, bottom, "MAX", 2, 2, comment=notes.get(spec)))
            bottom = spec
        else:
            name, n = spec
            out.append(_vgg_conv(name, bottom, n, w, b, params_blocks, notes.get(name)))
            out.append(relu("relu" + name[4:], name))
            bottom = name
        if (spec if isinstance(spec, str) else spec[0]) == upto:
            break
    bottom = fc_bottom or bottom
    for i, (name, n) in enumerate(fc):
        out.append(_vgg_ip(name, bottom, n, w, b, params_blocks, (1, 2), notes.get(name)))
        out.append(relu("relu" + name[2:], name))
        out.append(dropout("drop" + name[2:], name, 0.5))
        bottom = name
    if drop_before_classifier:
        out.append(layer("drop8", "Dropout", [bottom], ["drop8"], [("dropout_param", [("dropout_ratio", 0.5)])],
                         comment=(
            "train_val only (identity at test time): Table 2 lists dropout for VGGNet_R and its caption\n"
            "puts 0.5 dropout in the fully connected layers; fc8 is the only one here. Not in place: Caffe\n"
            "refuses an in-place layer on a blob that another layer (conv2_1) also reads (\"Top blob 'pool1'\n"
            "produced by multiple sources\", real Caffe, compare/golden/prototxt_check.txt).")))
        bottom = "drop8"
    out.append(_vgg_ip(classifier, bottom, num_classes, w, b, params_blocks, lr_last, notes.get(classifier)))
    return out, classifier


def _vgg_conv(name, bottom, n, w, b, params_blocks, comment):
    cp = [("num_output", n), ("pad", 1), ("kernel_size", 3)]
    if w:
        cp += [("weight_filler", w), ("bias_filler", b)]
    body = (params() if params_blocks else []) + [("convolution_param", cp)]
    return layer(name, "Convolution", [bottom], [name], body, comment)


def _vgg_ip(name, bottom, n, w, b, params_blocks, lr, comment):
    ip = [("num_output", n)]
    if w:
        ip += [("weight_filler", w), ("bias_filler", b)]
    body = (params(lr) if params_blocks else []) + [("inner_product_param", ip)]
    return layer(name, "InnerProduct", [bottom], [name], body, comment)


def vgg_deploy(name, header, size, batch=1, **kw) -> str:
    layers, last = vgg_layers(**kw)
    return net_text(name, header, [input_layer((batch, 3, size, size))] + layers + [softmax(last)])


def vgg_train_val(name, header, data_comment, crop=None, mean=None, mirror=False, **kw) -> str:
    layers, last = vgg_layers(**kw)
    tail = [accuracy("accuracy", last, "accuracy"), loss("loss", last, "loss")]
    return net_text(name, header, data_layers(crop, mean, mirror, data_comment) + layers + tail)


# --------------------------------------------------------------------------------------------------------------
# CIFAR-10 "full" (BVLC examples/cifar10/cifar10_full_train_test.prototxt).
# --------------------------------------------------------------------------------------------------------------


def cifar_layers(num_classes=2, train=False) -> tuple[list[str], str]:
    g = lambda std: filler("gaussian", std=std)  # noqa: E731
    out = [conv("conv1", "data", 32, 5, pad=2, weight=g(0.0001), bias=filler("constant"), lr=(1, 2),
                decay=(None, None)),
           pool("pool1", "conv1", "MAX", 3, 2), relu("relu1", "pool1"),
           lrn("norm1", "pool1", 3, 5e-05, 0.75, within_channel=True),
           conv("conv2", "norm1", 32, 5, pad=2, weight=g(0.01), bias=filler("constant"), lr=(1, 2),
                decay=(None, None)),
           relu("relu2", "conv2"), pool("pool2", "conv2", "AVE", 3, 2),
           lrn("norm2", "pool2", 3, 5e-05, 0.75, within_channel=True),
           conv("conv3", "norm2", 64, 5, pad=2, weight=g(0.01), bias=filler("constant"), lr=None,
                comment="No param blocks, as BVLC's conv3 (lr_mult 1 for the bias too)."),
           relu("relu3", "conv3"), pool("pool3", "conv3", "AVE", 3, 2)]
    if train:
        out.append(dropout("drop3", "pool3", 0.5, comment=(
            "Not in BVLC's cifar10_full: added because Table 2 lists dropout for CIFAR and its caption says\n"
            "\"0.5 dropout was used in fully-connected layers\"; ip1 is CIFAR's only fully connected layer.\n"
            "Dropout is the identity at test time and has no parameters, so deploy omits it.")))
    out.append(inner_product("ip1", "pool3", num_classes, weight=g(0.01), bias=filler("constant"),
                             lr=(1, 2), decay=(250, 0), comment=(
                                 "num_output 10 -> 2 (paper, \"Training from Scratch\"). decay_mult 250 as BVLC:\n"
                                 "with weight_decay 0.004 the effective L2 on ip1 is 1.0.")))
    return out, "ip1"


# --------------------------------------------------------------------------------------------------------------
# Solvers.
# --------------------------------------------------------------------------------------------------------------


def solver_text(net_dir: str, header: str, weight_decay: float, weight_decay_source: str,
                base_lr: float = 0.0001, lr_comment: str | None = None) -> str:
    lr_comment = lr_comment or ("Table 2 and \"Results\": 0.0001 for all four scratch nets (chosen from 0.0001, "
                                "0.0005, 0.00002 in Figure 2).")
    lines = [
        *(f"# {line}" if line else "#" for line in header.strip("\n").split("\n")),
        "#",
        "# The trainer (replicate/) recomputes stepsize and max_iter from the actual training-set size and",
        "# batch of each fold: iterations = ceil(epochs * train_patches / batch). The values below are that",
        f"# formula for the paper's numbers: {PATCHES_PER_PATCH_SIZE} patches per patch size (paper, \"MR Imaging",
        f"# Pre-processing\"), {CV_FOLDS}-fold CV -> {TRAIN_PATCHES} training patches (9/10), batch {BATCH} (GUESS:",
        "# the paper gives no batch size), so one epoch = "
        f"{TRAIN_PATCHES}/{BATCH} = {TRAIN_PATCHES / BATCH:.2f} iterations.",
        f'net: "prototxt/{net_dir}/train_val.prototxt"',
        "# Patient-level evaluation (25 patches per test patient, averaged scores, AUC) is done by replicate/,",
        "# not by Caffe's test net, so no test_iter / test_interval here.",
        f"# {lr_comment}",
        f"base_lr: {base_lr}",
        "# Table 2: \"step\" policy, the learning rate reduced 50% after each 5 epochs.",
        'lr_policy: "step"',
        "gamma: 0.5",
        f"# 5 epochs = ceil(5 * {TRAIN_PATCHES} / {BATCH})",
        f"stepsize: {STEPSIZE}",
        f"# 40 epochs (paper, \"Methods Overview\") = ceil(40 * {TRAIN_PATCHES} / {BATCH})",
        f"max_iter: {MAX_ITER}",
        "# GUESS (paper silent): 0.9, the momentum of every original solver (BVLC GoogLeNet, CIFAR-10 full, VGG).",
        "momentum: 0.9",
        f"# GUESS (paper says only \"L2 regularization\"): {weight_decay_source}",
        f"weight_decay: {weight_decay}",
        "display: 100",
        "# Snapshots off: replicate/ saves its own checkpoints atomically.",
        "snapshot: 0",
        "snapshot_after_train: false",
        "# GUESS: a fixed seed, so a rerun draws the same initial weights and dropout masks.",
        "random_seed: 1",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# The nets.
# --------------------------------------------------------------------------------------------------------------
GOOGLENET_WD = "0.0002, BVLC bvlc_googlenet/solver.prototxt and quick_solver.prototxt."
VGG_WD = "0.0005, Simonyan & Zisserman 2015, section 3.1."
CIFAR_WD = "0.004, BVLC examples/cifar10/cifar10_full_solver.prototxt."

TRANSFER_LR = ("Paper, \"Transfer Learning\": 0.0001 for all layers; the new last layer has lr_mult 10 "
               "(bias 20) so its rate is 0.001.")

R_NOTES_TEXT = {
    "conv1/7x7_s2": "GoogleNet_R (paper, \"Training from Scratch\"): filters 64 -> 32, pad 3 -> 2, kernel 7 -> 5,\n"
                    "stride 2 -> 1. The layer keeps its BVLC name.",
    "pool1/3x3_s2": "GoogleNet_R: pool1 stride 2 -> 1 (paper). The layer keeps its BVLC name.",
}
R_NOTES_TABLE2 = {
    "conv1/7x7_s2": "Table 2 reading (docs/deviations.md): 32 filters, kernel 5, pad 2 as the text says, but the\n"
                    "stride stays 2 (the text says 1). Found by `python -m models audit --search`.",
    "pool1/3x3_s2": "Table 2 reading: pool1 stride 2 -> 1, as the text says.",
    "pool5/drop_7x7_s1": "Table 2 reading: no pool5/7x7_s1. At 64x64 input with conv1 stride 2 and pool1 stride 1,\n"
                         "inception_5b/output is 3x3x1024, too small for BVLC's 7x7 pooling (Caffe rejects a\n"
                         "negative output size); the classifier reads the 3x3x1024 map (9216 inputs). This is the\n"
                         "only pool5 choice that gives Table 2's 388.77M MACC and 5.98M params.",
}


def build_all() -> dict[str, str]:
    """Return {relative path: file text} for every generated file."""
    files: dict[str, str] = {}

    # --- googlenet (scratch, 224) ---------------------------------------------------------------------------
    h = """GoogleNet trained from scratch (Zhu et al. 2019, "Training from Scratch"; Table 2 row "GoogleNet";
Table 3 input 224x224x3). BVLC bvlc_googlenet layout and layer names, fillers (xavier weights, constant 0.2
biases) and LRN as BVLC; loss3/classifier 1000 -> 2 outputs (paper: "modified from 1000 to 2")."""
    files["googlenet/deploy.prototxt"] = googlenet_deploy("GoogleNet", h + "\nDeploy: batch 1 (resize with "
                                                          "load_net(batch=...)).", 224)
    files["googlenet/train_val.prototxt"] = googlenet_train_val(
        "GoogleNet", h + "\nTrain/val: with BVLC's two auxiliary classifiers (loss1, loss2; loss_weight 0.3).\n"
        "top-5 accuracy layers dropped: Caffe's Accuracy requires top_k <= number of classes (2).",
        "GUESS (paper silent on scratch GoogleNet preprocessing): BVLC's 224 crop, mirror and mean values.\n"
        "The sources are placeholders: replicate/ feeds patches from its PatchStore, not from an LMDB.",
        crop=224, mean=GOOGLENET_MEAN, mirror=True)
    files["googlenet/solver.prototxt"] = solver_text(
        "googlenet", "Solver for GoogleNet from scratch (Table 2 row \"GoogleNet\").", 0.0002, GOOGLENET_WD)

    # --- googlenet_r (the text) -----------------------------------------------------------------------------
    h = """GoogleNet_R as the paper's text describes it (Zhu et al. 2019, "Training from Scratch"): GoogLeNet with
conv1 32 filters, kernel 5, pad 2, stride 1, pool1 stride 1, input 64x64x3 (also Table 3), 2 outputs; the
rest as BVLC GoogLeNet. NOTE: this net does NOT reproduce Table 2 (1.73G MACC vs 388.77M): see
prototxt/googlenet_r_table2 and docs/deviations.md."""
    files["googlenet_r/deploy.prototxt"] = googlenet_deploy(
        "GoogleNet_R", h, 64, c1=32, k1=5, p1=2, s1=1, pool1_stride=1, notes=R_NOTES_TEXT)
    files["googlenet_r/train_val.prototxt"] = googlenet_train_val(
        "GoogleNet_R", h + "\nTrain/val: with BVLC's auxiliary classifiers (loss_weight 0.3).",
        "Patches are resized to 64x64 by replicate/ (paper: \"input size ... fixed to 64x64x3\"); crop_size 64\n"
        "is a no-op crop that declares the input size. Sources are placeholders: replicate/ feeds patches from\n"
        "its PatchStore, not from an LMDB.",
        crop=64, c1=32, k1=5, p1=2, s1=1, pool1_stride=1, notes=R_NOTES_TEXT)
    files["googlenet_r/solver.prototxt"] = solver_text(
        "googlenet_r", "Solver for GoogleNet_R (Table 2 row \"GoogleNet_R\").", 0.0002, GOOGLENET_WD)

    # --- googlenet_r_table2 (the reading that reproduces Table 2) -------------------------------------------
    h = """GoogleNet_R as Table 2 counts it (docs/deviations.md; `python -m models audit --search`): input 64x64x3,
conv1 32 filters, kernel 5, pad 2 but stride 2 (not 1 as the text says), pool1 stride 1, and no pool5: the
2-way classifier reads inception_5b/output (3x3x1024). 388,767,360 MACC (Table 2: 388.77M) and 5,982,898
params (Table 2: 5.98M), both equal to Table 2's printed digits."""
    kw = dict(c1=32, k1=5, p1=2, s1=2, pool1_stride=1, pool5="none", notes=R_NOTES_TABLE2)
    files["googlenet_r_table2/deploy.prototxt"] = googlenet_deploy("GoogleNet_R_table2", h, 64, **kw)
    files["googlenet_r_table2/train_val.prototxt"] = googlenet_train_val(
        "GoogleNet_R_table2", h + "\nTrain/val: with BVLC's auxiliary classifiers (loss_weight 0.3).",
        "Patches are resized to 64x64 by replicate/; crop_size 64 is a no-op crop that declares the input\n"
        "size. Sources are placeholders.", crop=64, **kw)
    files["googlenet_r_table2/solver.prototxt"] = solver_text(
        "googlenet_r_table2", "Solver for the Table 2 reading of GoogleNet_R.", 0.0002, GOOGLENET_WD)

    # --- vgg_r (the text) -----------------------------------------------------------------------------------
    h = """VGG_R as the paper's text describes it (Zhu et al. 2019, "Training from Scratch"): "we only retained the
first 2 convolution layers and all the fully connected layers", input 80x80x3 (also Table 3), 2 outputs:
conv1_1, conv1_2, pool1, fc6 4096, fc7 4096, fc8 2, with VGG's ReLUs and 0.5 dropout after fc6 and fc7
(Table 2 caption: 0.5 dropout in fully-connected layers). NOTE: this net does NOT reproduce Table 2: fc6
alone holds 102400 x 4096 weights (436M params vs Table 2's 317.38K); see prototxt/vgg_r_table2 and
docs/deviations.md. Fillers: GUESS N(0, 0.01) weights, 0 biases (VGG's deploy file has none)."""
    files["vgg_r/deploy.prototxt"] = vgg_deploy("VGG_R", h, 80, upto="pool1")
    files["vgg_r/train_val.prototxt"] = vgg_train_val(
        "VGG_R", h, "Patches are resized to 80x80 by replicate/ (paper); crop_size 80 is a no-op crop that\n"
        "declares the input size. Sources are placeholders.", crop=80, upto="pool1")
    files["vgg_r/solver.prototxt"] = solver_text("vgg_r", "Solver for VGG_R (Table 2 row \"VGGNet_R\").",
                                                 0.0005, VGG_WD)

    # --- vgg_r_table2 ---------------------------------------------------------------------------------------
    h = """VGG_R as Table 2 counts it (docs/deviations.md; `python -m models audit --search`): input 80x80x3,
conv1_1, conv1_2, pool1, then ONE fully connected layer, fc8 (102400 -> 2), reading pool1; conv2_1 (+ReLU) is
present but feeds nothing (a dead end, as left behind when a prototxt is cut down by rewiring fc8's bottom).
365,158,400 MACC (Table 2: 365.16M) and 317,378 params (Table 2: 317.38K), both equal to Table 2's printed
digits; the classifier's function is the text's "first 2 convolution layers" net with a single 2-way FC.
conv2_1 only receives weight decay (no gradient reaches it). Fillers: GUESS N(0, 0.01), 0 biases."""
    notes = {"conv2_1": "Dead end: counted by Table 2 (117,964,800 MACC, 73,856 params) but not read by fc8.",
             "fc8": "Reads pool1 (via drop8 in train_val; 40x40x64 = 102400 inputs), not conv2_1: Table 2's\n"
                    "317.38K params leave room for only ~204.8K weights in the FC part, i.e. inputs x outputs =\n"
                    "204800 = 102400 x 2."}
    kw = dict(upto="conv2_1", fc_bottom="pool1", fc=(), notes=notes)
    files["vgg_r_table2/deploy.prototxt"] = vgg_deploy("VGG_R_table2", h, 80, **kw)
    files["vgg_r_table2/train_val.prototxt"] = vgg_train_val(
        "VGG_R_table2", h, "Patches are resized to 80x80 by replicate/; crop_size 80 is a no-op crop that\n"
        "declares the input size. Sources are placeholders.", crop=80, drop_before_classifier=True, **kw)
    files["vgg_r_table2/solver.prototxt"] = solver_text("vgg_r_table2", "Solver for the Table 2 reading of VGG_R.",
                                                        0.0005, VGG_WD)

    # --- cifar ----------------------------------------------------------------------------------------------
    h = """CIFAR (Zhu et al. 2019, "Training from Scratch": "we set the input size to 80x80x3 and the output dimension
of the last layer to 2"): BVLC Caffe's CIFAR-10 "full" net (examples/cifar10/cifar10_full_train_test.prototxt):
conv 32/32/64 5x5 pad 2, pools 3x3 stride 2 (MAX, AVE, AVE), LRN WITHIN_CHANNEL local_size 3 alpha 5e-05
beta 0.75, ip1 -> 2. Layer names, fillers, lr/decay multipliers as BVLC. At 80x80: 92,130 params (Table 2:
92.13K), 76.96M MACC with LRN counted (Table 2: 77M)."""
    layers, last = cifar_layers()
    files["cifar/deploy.prototxt"] = net_text("CIFAR10_full_80", h, [input_layer((1, 3, 80, 80))] + layers +
                                              [softmax(last)])
    layers, last = cifar_layers(train=True)
    files["cifar/train_val.prototxt"] = net_text(
        "CIFAR10_full_80", h, data_layers(crop=80, comment=(
            "Patches are resized to 80x80 by replicate/; crop_size 80 is a no-op crop that declares the input\n"
            "size. GUESS: no mean subtraction in the net (BVLC's mean_file is CIFAR-10's; replicate/\n"
            "normalises). Sources are placeholders.")) + layers +
        [accuracy("accuracy", last, "accuracy"), loss("loss", last, "loss")])
    files["cifar/solver.prototxt"] = solver_text("cifar", "Solver for CIFAR (Table 2 row \"CIFAR\").", 0.004,
                                                 CIFAR_WD)

    # --- googlenet_transfer ---------------------------------------------------------------------------------
    h = """GoogleNet for transfer learning (Zhu et al. 2019, "Transfer Learning"; Table 4): BVLC GoogLeNet with every
BVLC layer name kept so bvlc_googlenet.caffemodel copies by name, except the last layers, renamed so they are
re-initialised randomly ("the weights in this layer were re-initialized randomly"): loss3/classifier_2way,
loss1/classifier_2way, loss2/classifier_2way, 2 outputs, lr_mult 10 (bias 20): with base_lr 0.0001 their rate
is 0.001 ("10 times larger than ... all the other layers")."""
    kw = dict(classifier="loss3/classifier_2way", lr_last=(10, 20),
              aux_classifiers=("loss1/classifier_2way", "loss2/classifier_2way"))
    files["googlenet_transfer/deploy.prototxt"] = googlenet_deploy("GoogleNet_transfer", h, 224, **kw)
    files["googlenet_transfer/train_val.prototxt"] = googlenet_train_val(
        "GoogleNet_transfer", h,
        "Paper: patches resized to 256x256x3, then a random 224x224x3 crop each epoch (crop_size 224 in TRAIN;\n"
        "Caffe crops the centre in TEST). Mean values as BVLC GoogLeNet (BGR 104, 117, 123). mirror: GUESS\n"
        "false (the paper mentions only cropping). Sources are placeholders.",
        crop=224, mean=GOOGLENET_MEAN, **kw)
    files["googlenet_transfer/solver.prototxt"] = solver_text(
        "googlenet_transfer", "Solver for GoogleNet transfer learning (Table 4 row \"GoogleNet\").", 0.0002,
        GOOGLENET_WD, lr_comment=TRANSFER_LR)

    # --- vgg16 (transfer) -----------------------------------------------------------------------------------
    h = """VGG16 for transfer learning (Zhu et al. 2019, "Transfer Learning"; Table 4 row "VGGNet"): the ILSVRC
16-layer net (VGG_ILSVRC_16_layers_deploy.prototxt names, so VGG_ILSVRC_16_layers.caffemodel copies by name)
at 224x224x3 with fc8 renamed fc8_2way (2 outputs, re-initialised, lr_mult 10 / bias 20 -> rate 0.001 with
base_lr 0.0001). Fillers on the copied layers are irrelevant (overwritten by the caffemodel); fc8_2way: GUESS
N(0, 0.01) weights, 0 biases."""
    kw = dict(classifier="fc8_2way", lr_last=(10, 20))
    files["vgg16/deploy.prototxt"] = vgg_deploy("VGG_ILSVRC_16_layers_2way", h, 224, **kw)
    files["vgg16/train_val.prototxt"] = vgg_train_val(
        "VGG_ILSVRC_16_layers_2way", h,
        "Paper: patches resized to 256x256x3, then a random 224x224x3 crop (crop_size 224). Mean values: VGG's\n"
        "BGR 103.939, 116.779, 123.68. mirror: GUESS false. Sources are placeholders.",
        crop=224, mean=VGG_MEAN, **kw)
    files["vgg16/solver.prototxt"] = solver_text(
        "vgg16", "Solver for VGG16 transfer learning (Table 4 row \"VGGNet\").", 0.0005, VGG_WD,
        lr_comment=TRANSFER_LR)

    # --- ImageNet deploy variants for feature extraction ----------------------------------------------------
    h = """BVLC GoogLeNet, 1000-way ImageNet deploy net (models/bvlc_googlenet/deploy.prototxt: same layer and blob
names and parameters), for the off-the-shelf deep features (Zhu et al. 2019, "Off-the-shelf deep features";
Tables 5, 6): the "FC1" feature is loss3/classifier, the 1000-d output of the last fully connected layer.
Input 10x3x224x224 as BVLC (BGR, 0..255, mean 104/117/123 subtracted by the caller); the Input layer is the
current-syntax form of BVLC's `input:` + `input_shape` fields."""
    files["googlenet_imagenet/deploy.prototxt"] = googlenet_deploy("GoogleNet", h, 224, batch=10,
                                                                   num_classes=1000)
    h = """VGG16, 1000-way ImageNet deploy net (VGG_ILSVRC_16_layers_deploy.prototxt: same layer and blob names), for
the off-the-shelf deep features (Zhu et al. 2019, "Off-the-shelf deep features"; Tables 5, 6): "FC1" is fc8,
the 1000-d output of the last fully connected layer. Input 10x3x224x224 as the original (BGR, 0..255, mean
103.939/116.779/123.68 subtracted by the caller). No fillers or param blocks, as the original."""
    files["vgg16_imagenet/deploy.prototxt"] = vgg_deploy("VGG_ILSVRC_16_layers", h, 224, batch=10,
                                                         num_classes=1000, fillers=False, params_blocks=False)
    return files


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def stale_files(root: Path = ROOT) -> list[str]:
    """Generated files whose checked-in text differs from what ``build_all`` writes (or that are missing)."""
    out = []
    for rel, text in build_all().items():
        p = root / rel
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="report files that differ; write nothing")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_files()
        for rel in stale:
            print(f"prototxt/{rel}: differs from prototxt/generate.py's output", file=sys.stderr)
        return 1 if stale else 0
    for rel, text in build_all().items():
        _write_atomic(ROOT / rel, text)
        print(f"wrote prototxt/{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
