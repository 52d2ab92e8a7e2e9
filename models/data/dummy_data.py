"""``DummyData``: tops filled by Caffe fillers (``src/caffe/layers/dummy_data_layer.cpp``, models/fillers.py).

0 fillers: constant 0; 1 filler: for every top; N: one per top. A constant filler fills its tops once; any other
refills them at every batch. Shapes come from ``shape`` (1 or N) or the legacy ``num``/``channels``/``height``/
``width`` fields (each 1 or N).
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import NetDefinitionError
from models.fillers import fill
from models.schema import pb

from .source import DataSource


class DummyDataSource(DataSource):
    """A ``DummyData`` layer: each top a float32 array of its ``shape``, from its filler."""

    def __init__(self, layer, phase, base_dir=None, seed=None):
        super().__init__(layer, phase, base_dir, seed)
        p = layer.dummy_data_param
        n = len(self.tops)
        nf = len(p.data_filler)
        if nf not in (0, 1, n):
            raise NetDefinitionError(f"{self.where}: number of data fillers must be 0, 1 or equal to the number "
                                     f"of tops: {n}; you specified {nf} data fillers")
        legacy = any(len(getattr(p, f)) for f in ("num", "channels", "height", "width"))
        if legacy:
            if len(p.shape):
                raise NetDefinitionError(f"{self.where}: both shape and legacy fields were specified")
            dims = []
            for f in ("num", "channels", "height", "width"):
                vals = list(getattr(p, f))
                if len(vals) not in (1, n):
                    raise NetDefinitionError(f"{self.where}: must specify '{f}' once, or once per top blob ({n}); "
                                             f"specified {len(vals)}")
                dims.append(vals * n if len(vals) == 1 else vals)
            self._shapes = [tuple(int(d[i]) for d in dims) for i in range(n)]
        else:
            if len(p.shape) not in (1, n):
                raise NetDefinitionError(f"{self.where}: must specify 'shape' once, or once per top blob ({n}); "
                                         f"specified {len(p.shape)}")
            shapes = [tuple(int(d) for d in s.dim) for s in p.shape]
            self._shapes = shapes * n if len(shapes) == 1 else shapes
        fillers = list(p.data_filler) or [pb.FillerParameter(type="constant", value=0)]
        self.fillers = [fillers[i if len(fillers) > 1 else 0] for i in range(n)]
        seed = int(self.seeds.generate_state(1, np.uint64)[0] >> np.uint64(1))
        self.generator = torch.Generator().manual_seed(seed)
        self._constant = {}
        for i, f in enumerate(self.fillers):
            if f.type == "constant":
                self._constant[i] = self._fill(i)

    def _fill(self, i: int) -> np.ndarray:
        t = torch.empty(self._shapes[i], dtype=torch.float32)
        fill(t, self.fillers[i], self.generator, where=f"{self.where} top '{self.tops[i]}'")
        return t.numpy()

    def shapes(self) -> dict:
        return dict(zip(self.tops, self._shapes))

    def next_batch(self) -> dict:
        return {t: self._constant[i].copy() if i in self._constant else self._fill(i)
                for i, t in enumerate(self.tops)}
