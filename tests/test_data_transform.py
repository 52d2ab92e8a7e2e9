"""transform_param against a hand-computed numpy reference of data_transformer.cpp: per image, the mirror coin
is drawn first, then the crop offsets (TRAIN; centre in TEST); out = (x - mean[source position]) * scale, placed at
the cropped, possibly mirrored position."""
from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from models.data import make_source, write_lmdb, write_mean_file
from models.data.transform import DataTransformer
from models.schema import pb

pytest.importorskip("lmdb")


def tparam(text: str):
    return text_format.Parse(text, pb.TransformationParameter())


def reference(x, rng, *, crop=0, mirror=False, train=True, mean=None, mean_values=None, scale=1.0):
    """data_transformer.cpp Transform(const Datum&, Dtype*), one element at a time (slow and plain)."""
    n, c, h, w = x.shape
    oh, ow = (crop, crop) if crop else (h, w)
    out = np.zeros((n, c, oh, ow), np.float32)
    for i in range(n):
        flip = bool(rng.integers(2)) if mirror else False
        h_off = w_off = 0
        if crop:
            if train:
                h_off, w_off = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            else:
                h_off, w_off = (h - crop) // 2, (w - crop) // 2
        for ch in range(c):
            for hh in range(oh):
                for ww in range(ow):
                    v = np.float32(x[i, ch, h_off + hh, w_off + ww])
                    if mean is not None:
                        v = np.float32(v - np.float32(mean[ch, h_off + hh, w_off + ww]))
                    elif mean_values is not None:
                        v = np.float32(v - np.float32(mean_values[ch if len(mean_values) > 1 else 0]))
                    out[i, ch, hh, ow - 1 - ww if flip else ww] = np.float32(v * np.float32(scale))
    return out


@pytest.fixture
def x():
    return np.random.default_rng(3).integers(0, 256, (6, 3, 7, 9), dtype=np.uint8)


@pytest.mark.parametrize("train", [True, False])
def test_mean_file_crop_mirror_scale_match_the_reference(tmp_path, x, train):
    mean = np.random.default_rng(4).uniform(0, 255, (3, 7, 9)).astype(np.float32)
    write_mean_file(tmp_path / "mean.binaryproto", mean)
    p = tparam(f'mean_file: "{tmp_path}/mean.binaryproto" crop_size: 5 mirror: true scale: 0.00390625')
    t = DataTransformer(p, "TRAIN" if train else "TEST", np.random.default_rng(11))
    got = t(x)
    want = reference(x, np.random.default_rng(11), crop=5, mirror=True, train=train, mean=mean, scale=0.00390625)
    np.testing.assert_array_equal(got, want)


def test_mean_is_subtracted_before_scaling(tmp_path, x):
    mean = np.full((3, 7, 9), 10, np.float32)
    write_mean_file(tmp_path / "mean.binaryproto", mean)
    got = DataTransformer(tparam(f'mean_file: "{tmp_path}/mean.binaryproto" scale: 0.5'), "TEST",
                          np.random.default_rng(0))(x)
    np.testing.assert_array_equal(got, (x.astype(np.float32) - 10) * np.float32(0.5))
    assert not np.allclose(got, x * 0.5 - 10)


def test_list_of_images_and_array_give_the_same(x):
    p = tparam("crop_size: 4 mirror: true mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.5")
    a = DataTransformer(p, "TRAIN", np.random.default_rng(2))(x)
    b = DataTransformer(p, "TRAIN", np.random.default_rng(2))(list(x))
    np.testing.assert_array_equal(a, b)
    want = reference(x, np.random.default_rng(2), crop=4, mirror=True, mean_values=[104, 117, 123], scale=0.5)
    np.testing.assert_array_equal(a, want)


def test_one_mean_value_for_all_channels_and_test_centre_crop(x):
    p = tparam("crop_size: 3 mean_value: 100 scale: 2")
    got = DataTransformer(p, "TEST", np.random.default_rng(0))(x)
    np.testing.assert_array_equal(got, (x[:, :, 2:5, 3:6].astype(np.float32) - 100) * 2)


def test_train_crops_vary_and_test_crops_do_not(x):
    p = tparam("crop_size: 2")
    same = np.repeat(x[:1], 40, axis=0)
    train = DataTransformer(p, "TRAIN", np.random.default_rng(0))(same)
    test = DataTransformer(p, "TEST", np.random.default_rng(0))(same)
    assert len({a.tobytes() for a in train}) > 10
    assert len({a.tobytes() for a in test}) == 1


def test_mirror_flips_in_test_too(x):
    # Caffe draws the mirror coin whenever mirror: true, in either phase (data_transformer.cpp)
    same = np.repeat(x[:1], 40, axis=0)
    out = DataTransformer(tparam("mirror: true"), "TEST", np.random.default_rng(0))(same)
    flipped = [np.array_equal(o, x[0, :, :, ::-1]) for o in out]
    assert 5 < sum(flipped) < 35 and all(f or np.array_equal(o, x[0]) for f, o in zip(flipped, out))


def test_data_layer_applies_transform_and_random_seed_repeats(tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(6))
    mean = np.full((3, 7, 9), 10, np.float32)
    write_mean_file(tmp_path / "m.binaryproto", mean)
    text = (f'name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{tmp_path}/db" batch_size: 3 '
            f'backend: LMDB }} transform_param {{ crop_size: 5 mirror: true scale: 0.1 '
            f'mean_file: "{tmp_path}/m.binaryproto" }}')
    lay = text_format.Parse(text, pb.LayerParameter())

    def run(seed):
        with make_source(lay, "TRAIN", seed=seed) as s:
            return np.concatenate([s.next_batch()["data"] for _ in range(4)])

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with make_source(lay, "TEST", seed=0) as s:
        got = s.next_batch()["data"]
    assert s.shapes()["data"] == (3, 3, 5, 5)
    # TEST: centre crop; mirror still random, so compare each item to its flipped or unflipped reference
    for i in range(3):
        ref = (x[i, :, 1:6, 2:7].astype(np.float32) - 10) * np.float32(0.1)
        assert np.array_equal(got[i], ref) or np.array_equal(got[i], ref[:, :, ::-1])


def test_encoded_datums_go_through_the_same_transform(tmp_path, x):
    pytest.importorskip("cv2")
    write_lmdb(tmp_path / "db", x, np.arange(6), encoding="png")
    text = (f'name: "d" type: "Data" top: "data" data_param {{ source: "{tmp_path}/db" batch_size: 6 backend: LMDB }}'
            ' transform_param { crop_size: 5 mean_value: 1 mean_value: 2 mean_value: 3 scale: 3 }')
    with make_source(text_format.Parse(text, pb.LayerParameter()), "TEST") as s:
        got = s.next_batch()["data"]
    want = reference(x, None, crop=5, train=False, mean_values=[1, 2, 3], scale=3)
    np.testing.assert_array_equal(got, want)
