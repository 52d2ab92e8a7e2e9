"""Off-the-shelf deep features (Zhu et al. 2019, "Off-the-shelf deep features", Tables 5 and 6, Figure 3).

A pre-trained ImageNet net (GoogLeNet or VGG16 deploy prototxt + caffemodel) is run in TEST phase on every patch,
resized to the net's input (224). Features come from any named blob; the default is the last fully connected layer
("We ... used the feature map of the last fully connected layer as default"), i.e. the 1000-d classifier output
before the softmax. Convolution/inception blobs (N, C, H, W) are pooled over x-y ("We may pooled the feature map
on the x - y coordinates of the image plane"), giving C values (Table 6's feature lengths). The paper does not say
how it pooled: ``pooling="avg"`` (default, the mean) or ``"max"`` (the maximum), a setting in the cache key.

Features are extracted once per (net, weights SHA1, patch store key, patch rows, input size, blob, extraction code)
and cached as ``.npy`` under the run folder, then reused across SVM kernels, folds and repeats. Every requested
blob of one net comes out of one forward pass.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from replicate.experiments.runstate import atomic_save_npy, atomic_write_json, slug


POOLINGS = ("avg", "max")


def pool_xy(t: torch.Tensor, pooling: str = "avg") -> torch.Tensor:
    """(N, C, H, W) -> (N, C) by the mean (``"avg"``) or the maximum (``"max"``) over x-y; (N, D, 1, 1) and (N, D)
    -> (N, D) either way. Raises ValueError for another ``pooling``."""
    if pooling not in POOLINGS:
        raise ValueError(f"x-y pooling {pooling!r}: expected one of {POOLINGS}")
    if t.dim() == 4:
        return t.mean(dim=(2, 3)) if pooling == "avg" else t.amax(dim=(2, 3))
    return t.reshape(t.shape[0], -1)


def rows_digest(rows: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:12]


class FeatureCache:
    """``RUN/features/<key>.npy`` plus a JSON sidecar saying what the array is.

    ``code``: the identity of the code that extracts the features (the runner passes
    :func:`replicate.experiments.unit_code.code_id` of ``"extract"``), the last field of every key, so an edit to
    that code re-extracts; None leaves it out of the key."""

    def __init__(self, run_dir, code: str | None = None):
        self.dir = Path(run_dir) / "features"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.code = code

    def key(self, net_key: str, weights_id: str, store_key: str, rows: np.ndarray, size: int, blob: str,
            pooling: str = "avg") -> str:
        """The cache key; the default average pooling keeps the keys written before pooling was a setting."""
        k = f"{net_key}|{weights_id}|{store_key}|{rows_digest(rows)}|{size}|{blob}"
        k = k if pooling == "avg" else f"{k}|pool={pooling}"
        return k if self.code is None else f"{k}|code={self.code}"

    def path(self, key: str) -> Path:
        return self.dir / f"{slug(key)}.npy"

    def get(self, key: str):
        p = self.path(key)
        return np.load(p) if p.exists() else None

    def put(self, key: str, array: np.ndarray, meta: dict) -> None:
        atomic_save_npy(self.path(key), array)
        atomic_write_json(self.path(key).with_suffix(".json"), {"key": key, "shape": list(array.shape), **meta})


def extract(pair, store, rows: np.ndarray, spec, blobs: list[str], batch: int = 32, progress=None,
            pooling: str = "avg") -> dict[str, np.ndarray]:
    """Run ``pair.test_module`` (replicate.experiments.training.NetPair) on ``store.patches[rows]`` and return, per
    blob, the (len(rows), D) feature matrix (x-y pooled where spatial, :func:`pool_xy`)."""
    from replicate.experiments.training import prepare

    out: dict[str, list[np.ndarray]] = {b: [] for b in blobs}
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            r = np.asarray(rows[s:s + batch])
            srt = np.argsort(r)
            inv = np.argsort(srt)
            x = prepare(np.asarray(store.patches[r[srt]])[inv], spec, None)
            res = pair.blobs(x, blobs)
            for b in blobs:
                out[b].append(pool_xy(res[b].float(), pooling).cpu().numpy().astype(np.float32))
            if progress is not None:
                progress.update(len(r))
    return {b: np.concatenate(v) for b, v in out.items()}


def cached_features(cache: FeatureCache, make_pair, store, rows: np.ndarray, spec, blobs: list[str],
                    weights_id: str, batch: int = 32, progress=None, pooling: str = "avg") -> dict[str, np.ndarray]:
    """Features for ``blobs``: cached ones are read back, the missing ones come from one forward pass.
    ``pooling``: x-y pooling of spatial blobs (:func:`pool_xy`), part of each cache key."""
    keys = {b: cache.key(spec.key, weights_id, store.key, rows, spec.input_size, b, pooling) for b in blobs}
    have = {b: cache.get(k) for b, k in keys.items()}
    missing = [b for b, v in have.items() if v is None]
    if missing:
        got = extract(make_pair(), store, rows, spec, missing, batch=batch, progress=progress, pooling=pooling)
        for b in missing:
            cache.put(keys[b], got[b], {"net": spec.key, "weights": weights_id, "blob": b,
                                         "store": store.key, "input_size": spec.input_size,
                                         "rows_digest": rows_digest(rows), "pooling": pooling})
            have[b] = got[b]
    elif progress is not None:
        progress.update(len(rows))
    return have
