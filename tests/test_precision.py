"""models.precision.strict_fp32: TF32 off inside the block, the caller's settings back after it (even on error)."""
import pytest
import torch

from models.precision import _new_api, strict_fp32


def _state():
    if _new_api():
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_strict_fp32_sets_ieee_and_restores():
    before = _state()
    with pytest.raises(RuntimeError):
        with strict_fp32():
            assert _state() == (("ieee", "ieee") if _new_api() else (False, False))
            raise RuntimeError("boom")
    assert _state() == before
    with strict_fp32(enabled=False):
        assert _state() == before
