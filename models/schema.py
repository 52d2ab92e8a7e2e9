"""Python classes for the Caffe schema in ``caffe.proto``.

The classes are generated at first use by a maintained tool, never edited by hand: ``grpc_tools.protoc``
(PyPI ``grpcio-tools``; a ``protoc`` on PATH is used when grpc_tools is absent) compiles ``caffe.proto`` into a
serialized ``FileDescriptorSet``, which is cached, and protobuf's own ``message_factory`` builds the message
classes from it. A descriptor set is plain protobuf data, so this works with any protobuf runtime from 4.x on
(generated ``_pb2.py`` modules, by contrast, are tied to the protoc version that wrote them).

Usage::

    from models.schema import pb
    net = pb.NetParameter()
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO_PATH = Path(__file__).with_name("caffe.proto")


def cache_dir() -> Path:
    """Where generated artefacts live: ``$RGR_CACHE_DIR`` or ``$XDG_CACHE_HOME/radiogenomics-replica``."""
    root = os.environ.get("RGR_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "radiogenomics-replica"


def _compile_descriptor_set(proto: Path, out: Path) -> None:
    """Run protoc (grpc_tools' bundled copy, else ``protoc`` on PATH) to write a descriptor set."""
    args = [f"-I{proto.parent}", f"--descriptor_set_out={out}", proto.name]
    # Probe, do not import: grpc_tools' in-process libprotobuf makes a later `import caffe` (real pycaffe, whose
    # _caffe.so carries its own libprotobuf) abort on a mutex assertion; protoc runs in a subprocess anyway.
    if importlib.util.find_spec("grpc_tools") is not None:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", *args]
    else:
        exe = shutil.which("protoc")
        if exe is None:
            raise RuntimeError(
                "cannot compile models/caffe.proto: install grpcio-tools (pip install grpcio-tools) "
                "or put protoc on PATH") from None
        cmd = [exe, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed on {proto}: {proc.stderr.strip()}")


def _descriptor_set_bytes(proto: Path = PROTO_PATH) -> bytes:
    text = proto.read_bytes()
    key = hashlib.sha1(text).hexdigest()[:16]
    target = cache_dir() / f"{proto.stem}-{key}.desc"
    if target.exists():
        return target.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "caffe.desc"
        _compile_descriptor_set(proto, out)
        data = out.read_bytes()
        os.replace(out, target)  # atomic: concurrent first uses never see half a file
    return data


def _message_class(pool, desc):
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)  # protobuf 4.21


def _build(proto: Path = PROTO_PATH) -> dict:
    fds = descriptor_pb2.FileDescriptorSet.FromString(_descriptor_set_bytes(proto))
    pool = descriptor_pool.DescriptorPool()
    for fdp in fds.file:
        pool.Add(fdp)
    fd = pool.FindFileByName(proto.name)
    ns = {}
    for name, desc in fd.message_types_by_name.items():
        ns[name] = _message_class(pool, desc)
    for name, enum in fd.enum_types_by_name.items():
        ns[name] = enum
    ns["TRAIN"], ns["TEST"] = 0, 1
    ns["pool"] = pool
    ns["proto_path"] = proto.resolve()
    return ns


#: the messages a user's caffe.proto must define (with Caffe's field names) to stand in for BVLC's
REQUIRED_MESSAGES = ("NetParameter", "LayerParameter", "BlobProto", "BlobShape")


def use_proto(path) -> types.SimpleNamespace:
    """Parse nets, caffemodels and solvers with the caffe.proto at ``path`` (a fork's), for the rest of the process.

    The file is compiled at run time by ``grpc_tools.protoc`` (cached by content, as BVLC's is) and its message
    classes replace BVLC's in :data:`pb`, so a fork's ``*_param`` fields read in prototxt text and caffemodels and
    layer plugins (:func:`models.register_layer`) see them as ``layer.proto.<field>``. Messages the file does not
    define (a fork older than BVLC master may lack ``Datum`` or ``SolverState``) stay BVLC's. The schema is
    process-wide: a second, different file is refused, since messages already parsed with the first cannot mix
    with the second's. ``python -m models info|convert|run|train|test|time --proto FILE`` calls this first.

    Parameters
    ----------
    path : str or Path
        A ``.proto`` file in Caffe's ``package caffe;`` with at least :data:`REQUIRED_MESSAGES` (and the field names
        of BVLC's for the layers a net uses).

    Returns
    -------
    types.SimpleNamespace
        :data:`pb`, now holding the file's classes.

    Raises
    ------
    models.errors.NetDefinitionError
        The file is missing, does not compile (protoc's message, with file and line), lacks a required message, or
        a different file is already in use.
    """
    from .errors import NetDefinitionError

    proto = Path(path).resolve()
    current = pb.proto_path
    if current == proto:
        return pb
    if current != PROTO_PATH.resolve():
        raise NetDefinitionError(f"{proto}: this process already parses with {current}; one caffe.proto per "
                                 "process (messages of the two cannot mix)")
    if not proto.is_file():
        raise NetDefinitionError(f"--proto {path}: no such file (expected a fork's caffe.proto)")
    try:
        ns = _build(proto)
    except RuntimeError as e:
        raise NetDefinitionError(" ".join(str(e).split())) from None
    missing = [m for m in REQUIRED_MESSAGES if m not in ns]
    if missing:
        raise NetDefinitionError(f"{proto}: defines no {', '.join(missing)} message(s); expected a caffe.proto "
                                 "(package caffe) with Caffe's NetParameter, LayerParameter and BlobProto")
    pb.__dict__.update(ns)
    return pb


pb = types.SimpleNamespace(**_build())
"""Namespace of the Caffe message classes: ``pb.NetParameter``, ``pb.LayerParameter``, ``pb.BlobProto``, ..."""
