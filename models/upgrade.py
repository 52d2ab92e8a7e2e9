"""Upgrade of legacy (V1) nets to the current ``layer`` form.

Implements what Caffe's ``src/caffe/util/upgrade_proto.cpp`` does for V1 nets (``UpgradeV1Net``,
``UpgradeV1LayerParameter``, ``UpgradeV1LayerType``): the ``layers`` field (2) with an enum ``type`` becomes
``layer`` (100) with a string type; ``blobs_lr`` and ``weight_decay`` become ``param { lr_mult decay_mult }``;
``param`` names become ``param { name }``. The VGG_ILSVRC_16_layers caffemodel is stored in this form.
V0 nets (``layers { layer { ... } }``, pre-2014) are refused with a clear message.
"""
from __future__ import annotations

from .errors import NetDefinitionError
from .schema import pb

#: V1 enum name -> current type string (upgrade_proto.cpp, UpgradeV1LayerType).
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution",
    "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

#: Fields copied verbatim (same name in V1LayerParameter and LayerParameter).
_COPIED = ("bottom", "top", "name", "include", "exclude", "blobs", "loss_weight")


def is_v1(net: "pb.NetParameter") -> bool:
    return len(net.layers) > 0


def upgrade_v1_layer(v1, where: str = "") -> "pb.LayerParameter":
    """One ``V1LayerParameter`` -> ``LayerParameter``."""
    if v1.HasField("layer"):
        raise NetDefinitionError(
            f"{where}layer '{v1.name or v1.layer.name}' is in the V0 format (layers {{ layer {{ ... }} }}), "
            "which this project does not read; upgrade it with Caffe's upgrade_net_proto_text tool")
    out = pb.LayerParameter()
    for f in _COPIED:
        if f in ("bottom", "top", "include", "exclude", "blobs", "loss_weight"):
            getattr(out, f).extend(getattr(v1, f))
        else:
            setattr(out, f, getattr(v1, f))
    type_name = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"].values_by_number[v1.type].name \
        if v1.HasField("type") else "NONE"
    if type_name not in V1_TYPES:
        raise NetDefinitionError(f"{where}layer '{v1.name}' has the V1 type {type_name}, which has no upgrade")
    out.type = V1_TYPES[type_name]
    n = max(len(v1.blobs_lr), len(v1.weight_decay), len(v1.param))
    for i in range(n):
        spec = out.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
    for field, value in v1.ListFields():
        if field.name.endswith("_param") and field.name not in ("param",):
            getattr(out, field.name).CopyFrom(value)
    return out


def upgrade_net(net: "pb.NetParameter", where: str = "") -> "pb.NetParameter":
    """Return a net whose layers are all in the current form (a copy; the input is not changed)."""
    if not is_v1(net):
        return net
    if len(net.layer):
        raise NetDefinitionError(f"{where}net mixes 'layer' and legacy 'layers' fields; use one of them")
    out = pb.NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    for v1 in net.layers:
        out.layer.append(upgrade_v1_layer(v1, where))
    return out


def downgrade_layer(layer: "pb.LayerParameter") -> "pb.V1LayerParameter":
    """Current -> V1 form (for writing V1 caffemodels). Only what V1 can express."""
    inverse = {v: k for k, v in V1_TYPES.items()}
    if layer.type not in inverse:
        raise NetDefinitionError(f"layer '{layer.name}' of type {layer.type} cannot be written in the V1 format")
    v1 = pb.V1LayerParameter()
    v1.name = layer.name
    v1.type = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"].values_by_name[inverse[layer.type]].number
    v1.bottom.extend(layer.bottom)
    v1.top.extend(layer.top)
    v1.blobs.extend(layer.blobs)
    v1.include.extend(layer.include)
    v1.exclude.extend(layer.exclude)
    v1.loss_weight.extend(layer.loss_weight)
    for spec in layer.param:
        v1.blobs_lr.append(spec.lr_mult)
        v1.weight_decay.append(spec.decay_mult)
        if spec.name:
            v1.param.append(spec.name)
    v1_fields = pb.V1LayerParameter.DESCRIPTOR.fields_by_name
    for field, value in layer.ListFields():
        if field.name.endswith("_param") and field.name != "param":
            if field.name not in v1_fields:
                raise NetDefinitionError(f"layer '{layer.name}': {field.name} has no V1 equivalent")
            getattr(v1, field.name).CopyFrom(value)
    return v1
