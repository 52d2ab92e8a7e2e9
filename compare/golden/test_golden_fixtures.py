"""Integrity of the committed real-Caffe fixtures (compare/golden/fixtures, README.md here). No Caffe needed.

Size budget; every ``same_as`` / ``split_of`` / subsample reference resolves and the subsample index stream
regenerates; the seeded inputs (seeded.py) equal what Caffe was fed; the .caffemodel files that Caffe's
``Net.save()`` wrote read back (``models.read_caffemodel``) equal to the seeded weight recipe; dropout masks
unpack to the shape of their top and agree with the stored top where it is stored in full.
The converter's parity against these fixtures is compare/test_layers.py (converter helper).
"""
from __future__ import annotations

import numpy as np
import pytest

from compare.golden import seeded
from compare.golden.golden import FIXTURES, Fixture, fixture_names

BUDGET_BYTES = 30 * 2 ** 20
NET_FIXTURES = fixture_names(prefix="net__") + fixture_names(prefix="edge__")

pytestmark = pytest.mark.skipif(not NET_FIXTURES, reason="no golden fixtures (compare/golden/make_golden.py)")


def test_fixtures_fit_the_budget():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert 0 < total <= BUDGET_BYTES, f"compare/golden/fixtures holds {total / 2**20:.1f} MiB (budget 30 MiB)"


@pytest.mark.parametrize("name", NET_FIXTURES)
def test_references_and_seeded_inputs(name):
    fx = Fixture(name)
    for key in fx.prov["arrays"]:
        fx.expected(key)  # every same_as / split_of / subsample reference resolves, indices regenerate
    for blob, x in fx.inputs().items():
        c = fx.compare(f"blob/{blob}", x)
        assert c.max_err == 0 and c.nan_mismatch == 0, f"{name}: seeded input {blob} != what Caffe was fed"


@pytest.mark.parametrize("name", [n for n in NET_FIXTURES if Fixture(n).caffemodel is not None])
def test_caffe_written_caffemodel_equals_seeded_recipe(name):
    import models
    fx = Fixture(name)
    model = models.read_caffemodel(fx.caffemodel)
    types = {l["name"]: l["type"] for l in fx.prov["layers"]}
    net = models.load_net(str(fx.net_path), phase=fx.phase)
    transpose = {l.name: bool(l.proto.inner_product_param.transpose) for l in net.layers
                 if l.type == "InnerProduct"}
    seen = 0
    for lname, ltype, blobs in model.layers:
        if not blobs:
            continue
        # the net's shapes: Caffe writes a 0-axis blob (Scale num_axes 0, shared PReLU) with no shape, read as (1,)
        shapes = net.layer(lname).param_shapes if lname in {l.name for l in net.layers} else [b.shape for b in blobs]
        want = seeded.layer_params(seeded.weight_key(fx.prov["seed_prefix"], lname, shapes), types[lname], shapes,
                                   transpose=transpose.get(lname, False))
        for i, (a, b) in enumerate(zip(blobs, want)):
            np.testing.assert_array_equal(a, np.reshape(b, a.shape), err_msg=f"{name}: {lname} blob {i}")
        seen += 1
    assert seen > 0


@pytest.mark.parametrize("name", [n for n in NET_FIXTURES if Fixture(n).prov.get("dropout_layers")])
def test_dropout_masks_match_tops(name):
    fx = Fixture(name)
    masks = fx.dropout_masks()
    assert set(masks) == set(fx.prov["dropout_layers"])
    for layer, m in masks.items():
        shape, idx, vals, _ = fx.expected(f"dropout/{layer}")
        assert m.shape == shape and set(np.unique(m)) <= {0.0, 1.0}
        top = np.asarray(vals).ravel()
        np.testing.assert_array_equal(m.ravel()[idx] if idx is not None else m.ravel(), (top != 0).astype(np.float32))
        assert 0.0 < m.mean() < 1.0, f"{name}: mask of {layer} is all {m.mean()}"
