"""pycaffe's process-wide settings (_caffe.cpp: ``set_mode_cpu``, ``set_mode_gpu``, ``set_device``,
``set_random_seed``): the device later ``Net``s and solvers are built on, and the filler/dropout seed."""
from __future__ import annotations

import os

import numpy as np
import torch

from models.train.glog import CaffeLog

from .errors import ArgumentError

_STATE = {"mode": "cpu", "device": 0, "seed": None}


def set_mode_cpu() -> None:
    """Build later nets and solvers on the CPU (``Caffe::set_mode(Caffe::CPU)``), the default."""
    _STATE["mode"] = "cpu"


def set_mode_gpu() -> None:
    """Build later nets and solvers on CUDA device :func:`set_device` (``Caffe::set_mode(Caffe::GPU)``); the nets
    refuse to build (:class:`models.errors.CaffeError`) when torch has no CUDA device."""
    _STATE["mode"] = "gpu"


def set_device(device_id: int) -> None:
    """The CUDA device index GPU mode uses (``Caffe::SetDevice``)."""
    if isinstance(device_id, bool) or not isinstance(device_id, (int, np.integer)) or device_id < 0:
        raise ArgumentError(f"set_device: expected a device index >= 0, got {device_id!r}")
    _STATE["device"] = int(device_id)


def set_random_seed(seed: int) -> None:
    """Seed the fillers of nets built afterwards and torch's generator (dropout masks): ``Caffe::set_random_seed``.
    The streams are torch's, not Caffe's (docs/pycaffe.md)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ArgumentError(f"set_random_seed: expected an integer seed, got {seed!r}")
    _STATE["seed"] = int(seed)
    torch.manual_seed(int(seed))


def device() -> str:
    """``"cpu"`` or ``"cuda:N"``: where the next net is built."""
    return "cpu" if _STATE["mode"] == "cpu" else f"cuda:{_STATE['device']}"


def seed() -> int | None:
    return _STATE["seed"]


def solver_log() -> CaffeLog:
    """Caffe's log lines on stderr, silenced by ``GLOG_minloglevel`` >= 1 as glog silences INFO lines."""
    try:
        level = int(os.environ.get("GLOG_minloglevel", "0"))
    except ValueError:
        level = 0
    return CaffeLog(quiet=level >= 1)
