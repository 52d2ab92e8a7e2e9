"""The common part of every data source: the Data API's interface, phases, seeds and top-count checks."""
from __future__ import annotations

import zlib

import numpy as np

from models.errors import NetDefinitionError

from .errors import layer_where

PHASE_IDS = {"TRAIN": 0, "TEST": 1}


def phase_name(phase) -> str:
    """``"TRAIN"``/``"TEST"`` from a name or Caffe's enum value (0 = TRAIN, 1 = TEST)."""
    if isinstance(phase, str) and phase.upper() in PHASE_IDS:
        return phase.upper()
    if phase in (0, 1):
        return ("TRAIN", "TEST")[int(phase)]
    raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")


def seed_sequence(seed, name: str, phase: str) -> np.random.SeedSequence:
    """The root of one layer's random streams: from ``seed`` (``random_seed``), the layer name and the phase, so
    two layers (or the TRAIN and TEST copy of one) draw different streams; fresh entropy when ``seed`` is None
    (Caffe's ``random_seed: -1``)."""
    if seed is None or int(seed) < 0:
        return np.random.SeedSequence()
    return np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), PHASE_IDS[phase]])


class DataSource:
    """A data layer turned into a batch producer (the Data API of ``models.data``).

    Attributes
    ----------
    name : str
        The layer name.
    tops : list of str
        The layer's tops, in order.
    layer : pb.LayerParameter
    phase : {"TRAIN", "TEST"}
    prefetchable : bool
        False for sources fed from Python (MemoryData), which :class:`~models.data.Prefetcher` runs in the
        caller's thread.
    """

    prefetchable = True
    #: (min, max) number of tops (Layer::ExactNumTopBlobs / MinTopBlobs / MaxTopBlobs); None = no bound
    top_range: tuple = (1, None)

    def __init__(self, layer, phase, base_dir=None, seed=None):
        self.layer = layer
        self.name = layer.name
        self.tops = list(layer.top)
        self.phase = phase_name(phase)
        self.base_dir = base_dir
        self.where = layer_where(layer)
        lo, hi = self.top_range
        n = len(self.tops)
        if n < lo or (hi is not None and n > hi):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise NetDefinitionError(f"{self.where} has {n} tops {self.tops}; {layer.type} takes {want}")
        self.seeds = seed_sequence(seed, self.name, self.phase)

    @property
    def source_file(self):
        """The file or folder the layer reads (None for sources fed from Python or fillers)."""
        return getattr(self, "path", None) or getattr(self, "list_path", None)

    def _check_batch_size(self, batch_size: int, param: str) -> int:
        if batch_size <= 0:
            raise NetDefinitionError(f"{self.where}: {param}.batch_size must be positive, got {batch_size}")
        return int(batch_size)

    def shapes(self) -> dict:
        """``{top: shape}`` with the batch axis, as the layer's setup reshapes its tops."""
        raise NotImplementedError

    def next_batch(self) -> dict:
        """``{top: float32 array}``: the next batch, in Caffe's order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files and handles (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.where} tops={self.tops} phase={self.phase}>"
