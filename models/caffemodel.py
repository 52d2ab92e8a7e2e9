"""Binary .caffemodel files: read and write, current (V2, ``layer`` = field 100) and legacy (V1, ``layers`` =
field 2) forms, float (``data``) and double (``double_data``) blobs, legacy 4-D shape fields.

A caffemodel is a serialized ``NetParameter`` whose layers carry ``blobs``. Parsing a 550 MB VGG16 file with
protobuf alone would hold the file, the parsed message and the numpy copies at once (3x the file). Here the
file is memory-mapped; a small scanner splits the wire format at the level of layers and blobs
(https://protobuf.dev/programming-guides/encoding/), protobuf parses everything except the bulk ``data`` arrays,
and those are copied out of the mapping chunk by chunk while the mapped pages are released. Peak memory stays
near the file size (benchmarks/caffemodel_memory.py).
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import message as pb_message

from .errors import CaffemodelFormatError, WeightsError
from .schema import pb
from .upgrade import V1_TYPES, downgrade_layer

# Field numbers (caffe.proto).
NET_LAYER, NET_LAYERS = 100, 2
LAYER_BLOBS, V1_BLOBS = 7, 6
BLOB_DATA, BLOB_DIFF, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF = 5, 6, 8, 9


def _varint(buf, pos: int, end: int):
    result = shift = 0
    while True:
        if pos >= end:
            raise CaffemodelFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CaffemodelFormatError("malformed varint")


def _fields(buf, start: int, end: int):
    """Yield ``(field number, wire type, value start, value end, field start)`` for one message's bytes."""
    pos = start
    while pos < end:
        fstart = pos
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise CaffemodelFormatError(f"field number 0 at byte {fstart}")
        if wt == 0:
            _, pos2 = _varint(buf, pos, end)
        elif wt == 1:
            pos2 = pos + 8
        elif wt == 2:
            length, pos = _varint(buf, pos, end)
            pos2 = pos + length
        elif wt == 5:
            pos2 = pos + 4
        else:
            raise CaffemodelFormatError(f"unsupported wire type {wt} at byte {fstart}")
        if pos2 > end:
            raise CaffemodelFormatError(f"field {num} at byte {fstart} runs past the end of its message "
                                        f"({pos2} > {end}): the file is truncated")
        yield num, wt, pos, pos2, fstart
        pos = pos2


@dataclass
class CaffeModel:
    """The content of a caffemodel: layer names, types and parameter blobs in file order."""

    name: str
    version: str  # "V1" or "V2"
    layers: list = field(default_factory=list)  # [(name, type, [np.ndarray, ...])]

    def params(self) -> dict:
        """``{layer name: [arrays]}`` for layers that have blobs."""
        return {name: blobs for name, _, blobs in self.layers if blobs}


def _blob_shape(blob) -> tuple:
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    legacy = (blob.num, blob.channels, blob.height, blob.width)
    return tuple(int(x) for x in legacy)


_CHUNK = 1 << 24  # 16 MiB


def _copy_out(buf, dtype: str, offset: int, count: int) -> np.ndarray:
    """Copy ``count`` values at ``offset`` of the mapped file into a new array, 16 MiB at a time, telling the
    kernel after each chunk that the mapped pages are no longer needed, so that the file's pages and the copies
    never both sit in memory (peak about 1x the file size, not 2x)."""
    out = np.empty(count, dtype=dtype)
    view = out.view(np.uint8)
    nbytes = view.size
    pos = 0
    page = mmap.PAGESIZE
    while pos < nbytes:
        n = min(_CHUNK, nbytes - pos)
        view[pos:pos + n] = np.frombuffer(buf, dtype=np.uint8, count=n, offset=offset + pos)
        if isinstance(buf, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            lo = (offset + pos) // page * page
            hi = (offset + pos + n) // page * page
            if hi > lo:
                buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        pos += n
    return out


def _parse_blob(buf, start, end, where) -> np.ndarray:
    header = bytearray()
    chunks = {BLOB_DATA: [], BLOB_DOUBLE_DATA: []}
    for num, wt, vs, ve, fs in _fields(buf, start, end):
        if num in chunks:
            chunks[num].append((wt, vs, ve, fs))
        elif num in (BLOB_DIFF, BLOB_DOUBLE_DIFF):
            continue  # gradients are not parameters
        else:
            header += buf[fs:ve]
    blob = pb.BlobProto()
    try:
        blob.ParseFromString(bytes(header))
    except pb_message.DecodeError as e:
        raise CaffemodelFormatError(f"{where}: malformed blob header ({e})") from None
    shape = _blob_shape(blob)
    arrays = []
    for num, dtype, width in ((BLOB_DATA, "<f4", 4), (BLOB_DOUBLE_DATA, "<f8", 8)):
        for wt, vs, ve, fs in chunks[num]:
            if wt == 2:  # packed
                if (ve - vs) % width:
                    raise CaffemodelFormatError(f"{where}: packed data of {ve - vs} bytes is not a multiple of {width}")
                arrays.append(_copy_out(buf, dtype, vs, (ve - vs) // width))
            else:  # unpacked element (allowed by proto2 parsers)
                arrays.append(np.frombuffer(buf, dtype=dtype, count=1, offset=vs))
    if chunks[BLOB_DATA] and chunks[BLOB_DOUBLE_DATA]:
        raise CaffemodelFormatError(f"{where}: blob has both float data and double_data")
    data = arrays[0] if len(arrays) == 1 else (np.concatenate(arrays) if arrays else np.zeros(0, np.float32))
    count = int(np.prod(shape)) if shape else 1
    if shape == (0, 0, 0, 0) and data.size:
        shape = (data.size,)
        count = data.size
    if data.size != count:
        raise CaffemodelFormatError(f"{where}: shape {shape} needs {count} values, the file has {data.size}")
    return data.reshape(shape).astype(np.float32 if data.dtype == np.dtype("<f4") else np.float64, copy=False)


def read_caffemodel(path) -> CaffeModel:
    """Read a binary .caffemodel (V1 or V2) into numpy arrays (float32, or float64 for ``double_data``)."""
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise CaffemodelFormatError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise CaffemodelFormatError(f"{path}: empty file, not a caffemodel")
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    # Recognised by parsing it as a binary NetParameter (never by guessing from its first bytes: a valid
    # caffemodel may well start with printable bytes). Only when that fails is the file tried as text.
    try:
        return _read(buf, path)
    except CaffemodelFormatError as e:
        msg = str(e)
        kind = _text_kind(buf)
        if kind:
            raise CaffemodelFormatError(f"{path}: this is a text file ({kind}), not a binary caffemodel; pass the "
                                        ".caffemodel that Caffe's Net.save() or a solver snapshot wrote") from None
        raise CaffemodelFormatError(
            msg if msg.startswith(path) else f"{path}: not a valid binary caffemodel: {msg}") from None
    finally:
        buf.close()


def _text_kind(buf) -> str | None:
    """After the binary parse failed: "a text prototxt" when the bytes are a text-format NetParameter, "a
    prototxt?" for other UTF-8 text without NUL bytes, else None."""
    from google.protobuf import text_format
    if len(buf) > 64 << 20:
        return None
    data = bytes(buf[:])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):  # control bytes: binary protobuf framing
        return None
    try:
        text_format.Parse(text, pb.NetParameter(), allow_unknown_field=True)
    except Exception:  # noqa: BLE001 - not a complete text NetParameter
        return "a prototxt?"
    return "a text prototxt: a NetParameter in text format"


def _read(buf, path) -> CaffeModel:
    top = bytearray()
    layer_spans = []
    version = None
    for num, wt, vs, ve, fs in _fields(buf, 0, len(buf)):
        if num in (NET_LAYER, NET_LAYERS) and wt == 2:
            v = "V2" if num == NET_LAYER else "V1"
            if version and version != v:
                raise CaffemodelFormatError("mixes current 'layer' and legacy 'layers' fields")
            version = v
            layer_spans.append((vs, ve))
        elif num in (NET_LAYER, NET_LAYERS):
            raise CaffemodelFormatError(f"field {num} has wire type {wt}; not a Caffe NetParameter")
        else:
            top += buf[fs:ve]
    net = pb.NetParameter()
    try:
        net.ParseFromString(bytes(top))
    except pb_message.DecodeError as e:
        raise CaffemodelFormatError(f"not a Caffe NetParameter ({e})") from None
    if not layer_spans:
        raise CaffemodelFormatError("contains no layers: not a Caffe model (or an empty one)")
    model = CaffeModel(name=net.name, version=version)
    blob_field = LAYER_BLOBS if version == "V2" else V1_BLOBS
    msg_cls = pb.LayerParameter if version == "V2" else pb.V1LayerParameter
    for i, (start, end) in enumerate(layer_spans):
        header = bytearray()
        blob_spans = []
        for num, wt, vs, ve, fs in _fields(buf, start, end):
            if num == blob_field and wt == 2:
                blob_spans.append((vs, ve))
            else:
                header += buf[fs:ve]
        lp = msg_cls()
        try:
            lp.ParseFromString(bytes(header))
        except pb_message.DecodeError as e:
            raise CaffemodelFormatError(f"layer #{i}: malformed ({e})") from None
        if version == "V1":
            enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
            tname = enum.values_by_number[lp.type].name if lp.type in enum.values_by_number else str(lp.type)
            ltype = V1_TYPES.get(tname, tname)
        else:
            ltype = lp.type
        where = f"layer '{lp.name}'"
        blobs = [_parse_blob(buf, vs, ve, f"{where} blob {j}") for j, (vs, ve) in enumerate(blob_spans)]
        model.layers.append((lp.name, ltype, blobs))
    return model


# ---------------------------------------------------------------------------------------------------- writing

def _key(num: int, wt: int) -> bytes:
    return _encode_varint((num << 3) | wt)


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num: int, payload_len: int) -> bytes:
    return _key(num, 2) + _encode_varint(payload_len)


def _blob_chunks(arr: np.ndarray, dtype: str, legacy_shape: bool) -> list:
    arr = np.ascontiguousarray(arr, dtype="<f8" if dtype == "float64" else "<f4")
    blob = pb.BlobProto()
    if legacy_shape:
        if arr.ndim > 4:
            raise WeightsError(f"a {arr.ndim}-axis blob cannot use the legacy 4-D shape fields")
        dims = (1,) * (4 - arr.ndim) + arr.shape
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        blob.shape.dim.extend(int(d) for d in arr.shape)
    header = blob.SerializeToString()
    data = arr.tobytes()
    num = BLOB_DOUBLE_DATA if dtype == "float64" else BLOB_DATA
    body = [header, _len_field(num, len(data)), data]
    return body


def write_caffemodel(path, net, params: dict, version: str = "V2", dtype: str = "float32",
                     legacy_shape: bool | None = None) -> None:
    """Write ``params`` (``{layer name: [arrays]}``) as a caffemodel for ``net`` (a :class:`~models.Net`).

    The file holds the net's layers (as Caffe's ``Net::ToProto`` does) with their blobs; layers without params
    are kept so that the file is a complete net definition. ``version`` "V1" writes the legacy ``layers`` form
    (with legacy 4-D blob shapes, as V1-era Caffe did); the write is atomic.
    """
    if version not in ("V1", "V2"):
        raise ValueError("version must be 'V1' or 'V2'")
    if dtype not in ("float32", "float64"):
        raise ValueError("dtype must be 'float32' or 'float64'")
    check_params(net, params)
    legacy_shape = (version == "V1") if legacy_shape is None else legacy_shape
    head = pb.NetParameter()
    head.name = net.name
    pieces = [head.SerializeToString()]
    for layer in net.data_layers + net.layers:
        lp = pb.LayerParameter()
        lp.CopyFrom(layer.proto)
        del lp.blobs[:]
        layer_msg = downgrade_layer(lp) if version == "V1" else lp
        header = layer_msg.SerializeToString()
        blob_parts = []
        for arr in params.get(layer.name, []):
            chunks = _blob_chunks(np.asarray(arr), dtype, legacy_shape)
            size = sum(len(c) for c in chunks)
            blob_parts += [_len_field(V1_BLOBS if version == "V1" else LAYER_BLOBS, size)] + chunks
        size = len(header) + sum(len(p) for p in blob_parts)
        pieces += [_len_field(NET_LAYERS if version == "V1" else NET_LAYER, size), header] + blob_parts
    path = Path(path)
    from models.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for p in pieces:
            f.write(p)


def check_params(net, params: dict) -> None:
    """Raise :class:`WeightsError` unless every array fits its layer's learnable blob (name, index, shapes)."""
    by_name = {l.name: l for l in net.layers}
    for name, arrays in params.items():
        layer = by_name.get(name)
        if layer is None:
            raise WeightsError(f"weights given for layer '{name}', which net '{net.name}' does not have "
                               f"(phase {net.phase})")
        if len(arrays) != len(layer.param_shapes):
            raise WeightsError(f"layer '{name}' ({layer.type}) has {len(layer.param_shapes)} parameter blobs, "
                               f"got {len(arrays)}")
        for i, (arr, shape) in enumerate(zip(arrays, layer.param_shapes)):
            got = tuple(np.shape(arr))
            if got != tuple(shape) and not _legacy_equivalent(got, shape):
                raise WeightsError(f"layer '{name}' ({layer.type}) blob {i}: the net expects shape {tuple(shape)}, "
                                   f"the weights have {got}")


def _legacy_equivalent(got: tuple, want: tuple) -> bool:
    """A legacy 4-D blob (1, 1, N, K) matches (N, K) when the trailing dims agree (Caffe's ShapeEquals); a 0-axis
    blob (PReLU channel_shared, Scale num_axes 0) is written by Blob::ToProto with no shape at all, read here as
    (1,)."""
    if tuple(want) == () and got == (1,):
        return True
    if len(got) == 4 and len(want) < 4:
        return got[4 - len(want):] == tuple(want) and all(d == 1 for d in got[:4 - len(want)])
    return False


def params_for_net(net, model: CaffeModel, strict: bool = False) -> dict:
    """Match a caffemodel's blobs to a net by layer name (as Caffe's ``CopyTrainedLayersFrom`` does).

    Layers of the model that the net lacks are ignored (fine-tuning renames the new last layer); with
    ``strict`` every learnable layer of the net must be present. Legacy 4-D shapes are reshaped to the net's.
    """
    by_name = {l.name: l for l in net.layers}
    out = {}
    for name, _, blobs in model.layers:
        layer = by_name.get(name)
        if layer is None or not blobs:
            continue
        check_params(net, {name: blobs})
        out[name] = [np.asarray(b).reshape(s) for b, s in zip(blobs, layer.param_shapes)]
    if strict:
        missing = [l.name for l in net.layers if l.param_shapes and l.name not in out]
        if missing:
            raise WeightsError(f"the caffemodel has no weights for layers {missing}")
    return out
