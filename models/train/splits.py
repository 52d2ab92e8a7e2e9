"""Caffe's ``InsertSplits`` (src/caffe/util/insert_splits.cpp), run by ``Net::Init`` after ``FilterNet``.

Where one blob version feeds several layers (or feeds a layer and is also a weighted loss), Caffe inserts a
``Split`` layer right after its producer, named ``BLOB_LAYER_I_split`` (``I``: the top's index in its producer,
``LAYER`` ``input`` for the old ``input:`` fields), whose tops ``BLOB_LAYER_I_split_K`` feed the consumers in order;
a loss weight moves to the split's first top. pycaffe shows these layers and blobs, ``caffe time`` times them and
``Net::ToProto`` writes them; each split top keeps its own diff (the consumer's part of the gradient).
"""
from __future__ import annotations

from models.graph import PHASES, layer_included
from models.schema import pb


def split_layer_name(layer: str, blob: str, index: int) -> str:
    return f"{blob}_{layer}_{index}_split"


def split_blob_name(layer: str, blob: str, index: int, k: int) -> str:
    return f"{blob}_{layer}_{index}_split_{k}"


def insert_splits(net_param, phase: str, level: int = 0, stages=()) -> "pb.NetParameter":
    """The layers of ``net_param`` that the NetState (``phase``, ``level``, ``stages``) includes, with Caffe's
    ``Split`` layers inserted; a new ``NetParameter`` (``net_param`` is not changed). Unknown bottoms are left for
    :func:`models.graph.load_net` to report."""
    layers = [lp for lp in net_param.layer if layer_included(lp, PHASES[phase], level, stages)]
    last_top: dict = {}
    source_of: dict = {}
    uses: dict = {}
    loss_weight: dict = {}
    names = {-1: "input"}
    for i, name in enumerate(net_param.input):
        last_top[name] = (-1, i)
    for i, lp in enumerate(layers):
        names[i] = lp.name
        for j, b in enumerate(lp.bottom):
            if b not in last_top:
                continue
            src = last_top[b]
            source_of[(i, j)] = src
            uses[src] = uses.get(src, 0) + 1
        for j, t in enumerate(lp.top):
            last_top[t] = (i, j)
        for j in range(min(len(lp.loss_weight), len(lp.top))):
            loss_weight[(i, j)] = lp.loss_weight[j]
            if lp.loss_weight[j]:
                uses[(i, j)] = uses.get((i, j), 0) + 1
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    next_split: dict = {}

    def add_split(layer_idx: int, blob: str, j: int) -> None:
        count = uses.get((layer_idx, j), 0)
        if count <= 1:
            return
        owner = names[layer_idx]
        sp = out.layer.add()
        sp.name, sp.type = split_layer_name(owner, blob, j), "Split"
        sp.bottom.append(blob)
        w = loss_weight.get((layer_idx, j), 0.0)
        for k in range(count):
            sp.top.append(split_blob_name(owner, blob, j, k))
            if w:
                sp.loss_weight.append(w if k == 0 else 0.0)
        if w:
            next_split[(layer_idx, j)] = next_split.get((layer_idx, j), 0) + 1

    for j, name in enumerate(net_param.input):
        add_split(-1, name, j)
    for i, lp in enumerate(layers):
        new = out.layer.add()
        new.CopyFrom(lp)
        for j in range(len(new.bottom)):
            src = source_of.get((i, j))
            if src is not None and uses.get(src, 0) > 1:
                k = next_split.get(src, 0)
                new.bottom[j] = split_blob_name(names[src[0]], new.bottom[j], src[1], k)
                next_split[src] = k + 1
        for j, t in enumerate(list(new.top)):
            if uses.get((i, j), 0) > 1 and loss_weight.get((i, j), 0.0):
                new.ClearField("loss_weight")
            add_split(i, t, j)
    return out
