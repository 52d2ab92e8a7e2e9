"""Caffe's float32 arithmetic on CUDA.

PyTorch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by default on Ampere and later cards
(``torch.backends.cudnn.allow_tf32`` is True unless set), while Caffe's reference is IEEE float32. Measured on an
NVIDIA H200 (torch 2.11, cuDNN 9; ``benchmarks/gpu_check.py``): with TF32 left on, CUDA-vs-CPU outputs of the
GoogLeNet and VGG nets differ by up to 6.5e-4 of their scale, over the 1e-4 the golden tests hold. Every fp32
path of :mod:`models` on CUDA therefore runs inside :func:`strict_fp32`; bf16 paths are unaffected (they are
stated, not held to 1e-4).

Source: PyTorch docs, "TensorFloat-32 (TF32) on Ampere (and later) devices" (notes/cuda.html).
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["strict_fp32"]


def _new_api() -> bool:
    # torch >= 2.9 has per-backend ``fp32_precision``; mixing it with the legacy allow_tf32 flags is refused there.
    conv = getattr(torch.backends.cudnn, "conv", None)
    return conv is not None and hasattr(conv, "fp32_precision") and hasattr(torch.backends.cuda.matmul,
                                                                              "fp32_precision")


@contextlib.contextmanager
def strict_fp32(enabled: bool = True):
    """Run the block with TF32 off for cuDNN convolutions and cuBLAS matmuls (IEEE float32, as Caffe).

    Parameters
    ----------
    enabled : bool
        False makes this a no-op (for callers that choose at run time, e.g. bf16 runs).

    The previous settings are restored on exit. Harmless on CPU-only builds.
    """
    if not enabled:
        yield
        return
    if _new_api():
        targets = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
        rnn = getattr(torch.backends.cudnn, "rnn", None)
        if rnn is not None and hasattr(rnn, "fp32_precision"):
            targets.append(rnn)
        old = [t.fp32_precision for t in targets]
        try:
            for t in targets:
                t.fp32_precision = "ieee"
            yield
        finally:
            for t, v in zip(targets, old):
                t.fp32_precision = v
    else:
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
