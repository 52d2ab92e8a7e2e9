"""Read the real-Caffe golden fixtures (format: compare/golden/README.md). Pure numpy + json; no Caffe, no torch.

    from compare.golden.golden import Fixture, fixture_names, FIXTURES
    fx = Fixture("net__cifar__deploy__TEST")
    fx.inputs()                      # {blob: np.ndarray} regenerated from the seeded recipe
    fx.params()                      # {layer: [np.ndarray, ...]} (stored copy or seeded recipe)
    fx.compare("blob/conv1", ours)   # -> Comparison(max_err, scale, n, kind); raises nothing
    fx.check("blob/conv1", ours)     # AssertionError naming fixture, blob, error and tolerance

Keys: ``blob/<name>`` (forward value as Caffe shows it in net.blobs), ``diff/<name>`` (blob diff after
backward), ``pdiff/<layer>/<i>``, ``param/<layer>/<i>``, ``dropout/<layer>`` (the top of a TRAIN-phase
Dropout layer right after it ran), ``inplace/<layer>`` (the top of an in-place-rewritten blob right after
``layer`` ran, edge nets only), ``mask/<layer>`` (TRAIN Dropout mask, ``top != 0``, np.packbits).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

try:
    from . import seeded
except ImportError:  # run as a script next to seeded.py (make_golden.py under pycaffe)
    import seeded  # type: ignore[no-redef]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: the tolerance the project uses against Caffe: max|a-b| <= TOL * max(1, max|a|)
TOL = 1e-4


def fixture_names(root: Path = FIXTURES, prefix: str = "") -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)) if root.exists() else []


@dataclass
class Comparison:
    key: str
    kind: str          # "full" | "subsample" | "stats_only"
    n: int             # number of elements compared
    max_err: float     # max |ours - caffe| over compared elements (stats: relative error of sum/sumsq/max)
    scale: float       # max(1, max |caffe|)
    nan_mismatch: int  # positions where exactly one side is NaN

    def ok(self, tol: float = TOL) -> bool:
        return self.nan_mismatch == 0 and self.max_err <= tol * self.scale


class Fixture:
    """One fixture folder: provenance.json, blobs.npz, net.prototxt, optional weights.caffemodel."""

    def __init__(self, name: str, root: Path = FIXTURES):
        self.name, self.root = name, Path(root)
        self.dir = self.root / name
        if not (self.dir / "provenance.json").exists():
            raise FileNotFoundError(f"golden fixture {name!r}: no {self.dir / 'provenance.json'}")

    @cached_property
    def prov(self) -> dict:
        return json.loads((self.dir / "provenance.json").read_text())

    @cached_property
    def npz(self):
        return np.load(self.dir / "blobs.npz")

    @property
    def net_path(self) -> Path:
        return self.dir / "net.prototxt"

    @property
    def caffemodel(self) -> Path | None:
        """The .caffemodel Caffe's Net.save() wrote for this fixture (a TRAIN fixture shares its TEST twin's)."""
        w = self.prov.get("weights", "seeded")
        if w == "seeded":
            return None
        p = (self.dir / w).resolve()
        return p if p.exists() else None

    @property
    def phase(self) -> str:
        return self.prov["phase"]

    def keys(self, prefix: str = "blob/") -> list[str]:
        return [k for k in self.prov.get("arrays", {}) if k.startswith(prefix)]

    # ------------------------------------------------------------------ recipes
    def inputs(self) -> dict[str, np.ndarray]:
        out = {}
        for blob, m in self.prov["inputs"].items():
            shape = tuple(m["shape"])
            key = m["recipe"].split("'")[1]
            if m["recipe"].startswith("seeded_labels"):
                classes = int(m["recipe"].rsplit(",", 1)[1].strip(" )"))
                out[blob] = seeded.seeded_labels(key, shape, classes)
            else:
                out[blob] = seeded.seeded_array(key, shape, 1.0)
        return out

    def params(self, layer_types: dict[str, str] | None = None,
               shapes: dict[str, list[tuple]] | None = None, transpose: dict[str, bool] | None = None):
        """Learnable blobs, {layer: [arrays]}: the stored ``param/`` arrays when present, else the seeded recipe
        (then ``shapes`` {layer: [param shapes]} is needed; types default to the provenance layer table)."""
        stored = self.keys("param/")
        if stored:
            out: dict[str, list] = {}
            for k in stored:
                layer, i = k[len("param/"):].rsplit("/", 1)
                out.setdefault(layer, []).append((int(i), self.array(k)))
            return {l: [a for _, a in sorted(v)] for l, v in out.items()}
        if shapes is None:
            raise ValueError(f"fixture {self.name}: weights are seeded, pass shapes={{layer: [param shapes]}}")
        types = {l["name"]: l["type"] for l in self.prov["layers"]}
        if layer_types:
            types.update(layer_types)
        prefix = self.prov["seed_prefix"]
        transpose = transpose or {}
        return {layer: seeded.layer_params(seeded.weight_key(prefix, layer, shp), types[layer], shp,
                                           transpose=transpose.get(layer, False))
                for layer, shp in shapes.items()}

    # ------------------------------------------------------------------ stored arrays
    def meta(self, key: str) -> dict:
        try:
            return self.prov["arrays"][key]
        except KeyError:
            raise KeyError(f"fixture {self.name}: no array {key!r}") from None

    def resolve(self, key: str) -> tuple["Fixture", str, dict]:
        """Follow ``same_as`` / ``split_of`` references to the fixture and key that hold the data."""
        fx, k = self, key
        for _ in range(8):
            m = fx.meta(k)
            if m["stored"] == "same_as":
                fx, k = Fixture(m["fixture"], self.root), m["key"]
            elif m["stored"] == "split_of":
                k = m["source"]
            else:
                return fx, k, m
        raise RuntimeError(f"fixture {self.name}: reference loop at {key!r}")

    def array(self, key: str) -> np.ndarray:
        """The full stored array (raises ValueError when only a subsample or stats are stored)."""
        fx, k, m = self.resolve(key)
        if m["stored"] != "full":
            raise ValueError(f"fixture {self.name}: {key!r} is stored as {m['stored']}, not in full")
        return fx.npz[k]

    def stats(self, key: str) -> np.ndarray:
        fx, k, _ = self.resolve(key)
        return fx.npz[f"stat/{k}"]

    def expected(self, key: str):
        """(shape, flat indices or None, values or None, stats) for comparing an array of ours."""
        fx, k, m = self.resolve(key)
        shape = tuple(m["shape"])
        if m["stored"] == "packbits":
            bits = np.unpackbits(fx.npz[k])[:int(np.prod(shape))].astype(np.float32)
            return shape, None, bits, None
        if m["stored"] == "full":
            return shape, None, fx.npz[k], fx.npz[f"stat/{k}"]
        if m["stored"] == "subsample":
            idx = seeded.subsample_indices(m["index_key"], int(np.prod(shape)))
            if int(idx.sum()) != m["index_sum"]:
                raise RuntimeError(f"fixture {fx.name}: subsample indices of {k!r} do not regenerate "
                                   f"(sum {int(idx.sum())} != {m['index_sum']}); seeded.py changed?")
            return shape, idx, fx.npz[f"sub/{k}"], fx.npz[f"stat/{k}"]
        return shape, None, None, fx.npz[f"stat/{k}"]

    def compare(self, key: str, ours) -> Comparison:
        ours = np.asarray(ours, dtype=np.float64)
        shape, idx, vals, stat = self.expected(key)
        if tuple(ours.shape) != shape:
            # Caffe's loss/accuracy tops are 0-axis blobs (pycaffe shape ()); a 1-element (1,) is accepted for them
            if not (shape == () and ours.size == 1):
                raise AssertionError(f"golden {self.name} {key}: shape {tuple(ours.shape)}, Caffe {shape}")
            ours = ours.reshape(())
        if vals is None:  # stats only: relative error of sum, sum of squares, max |x|
            f = ours[np.isfinite(ours)]
            mine = np.array([f.sum(), (f ** 2).sum(), np.abs(f).max() if f.size else 0.0])
            ref = np.asarray(stat, dtype=np.float64)
            denom = np.maximum(1.0, np.abs(ref)) * np.array([1.0, 1.0, 1.0])
            err = float(np.max(np.abs(mine - ref) / denom))
            return Comparison(key, "stats_only", ours.size, err, 1.0, 0)
        a = ours.ravel()[idx] if idx is not None else ours.ravel()
        b = np.asarray(vals, dtype=np.float64).ravel()
        nan_mis = int(np.sum(np.isnan(a) != np.isnan(b)))
        m = ~(np.isnan(a) | np.isnan(b))
        err = float(np.max(np.abs(a[m] - b[m]))) if m.any() else 0.0
        scale = max(1.0, float(np.max(np.abs(b[m]))) if m.any() else 1.0)
        return Comparison(key, "subsample" if idx is not None else "full", int(a.size), err, scale, nan_mis)

    def check(self, key: str, ours, tol: float = TOL) -> Comparison:
        c = self.compare(key, ours)
        if not c.ok(tol):
            raise AssertionError(f"golden {self.name} {key} ({c.kind}, {c.n} elements): max|ours-caffe| = "
                                 f"{c.max_err:.3g} > {tol} * {c.scale:.3g}; NaN mismatches {c.nan_mismatch}")
        return c

    def dropout_masks(self) -> dict[str, np.ndarray]:
        """{Dropout layer: 0/1 float32 mask} recovered from Caffe's TRAIN-phase output as (top != 0)."""
        out = {}
        for layer in self.prov.get("dropout_layers", []):
            if f"mask/{layer}" in self.prov["arrays"]:
                m = self.meta(f"mask/{layer}")
                n = int(np.prod(m["shape"]))
                bits = np.unpackbits(self.npz[f"mask/{layer}"])[:n]
                out[layer] = bits.astype(np.float32).reshape(m["shape"])
                continue
            shape, idx, vals, _ = self.expected(f"dropout/{layer}")
            if idx is not None:
                raise ValueError(f"fixture {self.name}: dropout top of {layer} is subsampled; no full mask")
            out[layer] = (np.asarray(vals) != 0).astype(np.float32).reshape(shape)
        return out
