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
    try:
        from grpc_tools import protoc  # noqa: F401
        cmd = [sys.executable, "-m", "grpc_tools.protoc", *args]
    except ImportError:
        exe = shutil.which("protoc")
        if exe is None:
            raise RuntimeError(
                "cannot compile models/caffe.proto: install grpcio-tools (pip install grpcio-tools) "
                "or put protoc on PATH") from None
        cmd = [exe, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed on {proto}: {proc.stderr.strip()}")


def _descriptor_set_bytes() -> bytes:
    text = PROTO_PATH.read_bytes()
    key = hashlib.sha1(text).hexdigest()[:16]
    target = cache_dir() / f"caffe-{key}.desc"
    if target.exists():
        return target.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "caffe.desc"
        _compile_descriptor_set(PROTO_PATH, out)
        data = out.read_bytes()
        os.replace(out, target)  # atomic: concurrent first uses never see half a file
    return data


def _message_class(pool, desc):
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)  # protobuf 4.21


def _build() -> types.SimpleNamespace:
    fds = descriptor_pb2.FileDescriptorSet.FromString(_descriptor_set_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fdp in fds.file:
        pool.Add(fdp)
    fd = pool.FindFileByName("caffe.proto")
    ns = types.SimpleNamespace()
    for name, desc in fd.message_types_by_name.items():
        setattr(ns, name, _message_class(pool, desc))
    for name, enum in fd.enum_types_by_name.items():
        setattr(ns, name, enum)
    ns.TRAIN, ns.TEST = 0, 1
    ns.pool = pool
    return ns


pb = _build()
"""Namespace of the Caffe message classes: ``pb.NetParameter``, ``pb.LayerParameter``, ``pb.BlobProto``, ..."""
