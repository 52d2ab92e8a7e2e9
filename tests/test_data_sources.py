"""models.data sources read back what the writers wrote, in Caffe's order, wrapping around (data_layer.cpp,
image_data_layer.cpp, hdf5_data_layer.cpp, memory_data_layer.cpp, dummy_data_layer.cpp)."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from google.protobuf import text_format

from models.data import (Prefetcher, make_source, write_hdf5, write_hdf5_list, write_image_list, write_leveldb,
                         write_lmdb, write_mean_file)
from models.schema import pb

pytest.importorskip("lmdb")
pytest.importorskip("plyvel")
pytest.importorskip("h5py")
cv2 = pytest.importorskip("cv2")


def layer(text: str):
    return text_format.Parse(text, pb.LayerParameter())


def data_layer(path, batch, backend="LMDB", tops=("data", "label"), transform="", name="d"):
    t = " ".join(f'top: "{x}"' for x in tops)
    return layer(f'name: "{name}" type: "Data" {t} data_param {{ source: "{path}" batch_size: {batch} '
                 f'backend: {backend} }} {transform}')


@pytest.fixture
def images():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (5, 3, 6, 7), dtype=np.uint8), np.array([3, 1, 4, 1, 5])


def labels_of(src, n):
    return [src.next_batch()["label"].tolist() for _ in range(n)]


@pytest.mark.parametrize("backend,writer", [("LMDB", write_lmdb), ("LEVELDB", write_leveldb)])
def test_db_reads_back_in_key_order_and_wraps(tmp_path, images, backend, writer):
    x, y = images
    writer(tmp_path / "db", x, y)
    with make_source(data_layer(tmp_path / "db", 2, backend), "TEST") as src:
        assert src.tops == ["data", "label"]
        assert src.shapes() == {"data": (2, 3, 6, 7), "label": (2,)}
        got = [src.next_batch() for _ in range(4)]
    order = [0, 1, 2, 3, 4, 0, 1, 2]
    assert np.concatenate([b["label"] for b in got]).tolist() == y[order].tolist()
    data = np.concatenate([b["data"] for b in got])
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, x[order].astype(np.float32))


def test_float_datums_and_single_top(tmp_path):
    x = np.random.default_rng(1).normal(size=(3, 2, 4, 4)).astype(np.float32)
    write_lmdb(tmp_path / "db", x, np.arange(3))
    with make_source(data_layer(tmp_path / "db", 3, tops=("data",)), "TRAIN") as src:
        assert src.shapes() == {"data": (3, 2, 4, 4)}
        b = src.next_batch()
    assert list(b) == ["data"]
    np.testing.assert_array_equal(b["data"], x)


def test_key_order_is_the_database_order_not_insertion(tmp_path, images):
    import lmdb

    from models.data.datum import make_datum

    x, y = images
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i in reversed(range(5)):  # inserted last key first
            txn.put(f"k{i}".encode(), make_datum(x[i], int(y[i])).SerializeToString())
    env.close()
    with make_source(data_layer(tmp_path / "db", 5), "TEST") as src:
        assert src.next_batch()["label"].tolist() == y.tolist()


@pytest.mark.parametrize("encoding", ["png", "jpg"])
def test_encoded_datums_decode_with_opencv(tmp_path, images, encoding):
    x, y = images
    write_lmdb(tmp_path / "db", x, y, encoding=encoding)
    with make_source(data_layer(tmp_path / "db", 5), "TEST") as src:
        b = src.next_batch()
    if encoding == "png":  # lossless
        want = x
    else:  # what cv::imencode then cv::imdecode give
        want = np.stack([cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(im.transpose(1, 2, 0)))[1], -1)
                         .transpose(2, 0, 1) for im in x])
    np.testing.assert_array_equal(b["data"], want.astype(np.float32))
    assert b["label"].tolist() == y.tolist()


def test_force_gray_and_force_color(tmp_path, images):
    x, y = images
    write_lmdb(tmp_path / "color", x, y, encoding="png")
    write_lmdb(tmp_path / "gray", x[:, :1], y, encoding="png")
    gray = make_source(data_layer(tmp_path / "color", 5, transform="transform_param { force_gray: true }"), "TEST")
    # DecodeDatumToCVMat(datum, false): cv::imdecode(..., IMREAD_GRAYSCALE)
    want = np.stack([cv2.imdecode(cv2.imencode(".png", np.ascontiguousarray(im.transpose(1, 2, 0)))[1],
                                  cv2.IMREAD_GRAYSCALE) for im in x])
    assert gray.shapes()["data"] == (5, 1, 6, 7)
    np.testing.assert_array_equal(gray.next_batch()["data"][:, 0], want)
    color = make_source(data_layer(tmp_path / "gray", 5, transform="transform_param { force_color: true }"), "TEST")
    b = color.next_batch()["data"]
    assert b.shape == (5, 3, 6, 7)
    np.testing.assert_array_equal(b, np.repeat(x[:, :1], 3, axis=1).astype(np.float32))
    gray.close(), color.close()


@pytest.mark.parametrize("backend,writer", [("LMDB", write_lmdb), ("LEVELDB", write_leveldb)])
def test_train_and_test_nets_read_one_database(tmp_path, images, backend, writer):
    x, y = images
    writer(tmp_path / "db", x, y)
    a = make_source(data_layer(tmp_path / "db", 2, backend, name="train"), "TRAIN")
    b = make_source(data_layer(tmp_path / "db", 3, backend, name="test"), "TEST")
    assert labels_of(a, 1) == [[3, 1]] and labels_of(b, 1) == [[3, 1, 4]] and labels_of(a, 1) == [[4, 1]]
    a.close()
    assert labels_of(b, 1) == [[1, 5, 3]]
    b.close()


def test_writers_are_deterministic(tmp_path, images):
    x, y = images

    def digest(path):
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in files}

    for i in range(2):
        write_lmdb(tmp_path / f"l{i}", x, y, encoding="png")
        write_leveldb(tmp_path / f"v{i}", x, y)
        write_hdf5(tmp_path / f"h{i}.h5", data=x.astype(np.float32), label=y)
        write_image_list(tmp_path / f"i{i}", x, y)
        write_mean_file(tmp_path / f"m{i}.binaryproto", x.mean(0))
    assert digest(tmp_path / "l0") == digest(tmp_path / "l1")
    assert digest(tmp_path / "v0") == digest(tmp_path / "v1")
    assert digest(tmp_path / "i0") == digest(tmp_path / "i1")
    for stem, ext in (("h", ".h5"), ("m", ".binaryproto")):
        assert (tmp_path / f"{stem}0{ext}").read_bytes() == (tmp_path / f"{stem}1{ext}").read_bytes()
    write_lmdb(tmp_path / "l0", x[:2], y[:2])  # replaces an existing database
    with make_source(data_layer(tmp_path / "l0", 3), "TEST") as src:
        assert src.next_batch()["label"].tolist() == [3, 1, 3]


def image_layer(list_path, batch, extra="", transform=""):
    return layer(f'name: "img" type: "ImageData" top: "data" top: "label" image_data_param {{ source: "{list_path}" '
                 f'batch_size: {batch} root_folder: "{list_path.parent}/" {extra} }} {transform}')


def test_image_data_reads_list_in_order(tmp_path, images):
    x, y = images
    lst = write_image_list(tmp_path / "img", x, y)
    assert lst.read_text().splitlines()[0] == "00000000.png 3"
    with make_source(image_layer(lst, 3), "TEST") as src:
        assert src.shapes() == {"data": (3, 3, 6, 7), "label": (3,)}
        b1, b2 = src.next_batch(), src.next_batch()
    np.testing.assert_array_equal(np.concatenate([b1["data"], b2["data"]]), x[[0, 1, 2, 3, 4, 0]])
    assert b2["label"].tolist() == [1, 5, 3]


def test_image_data_resize_and_gray(tmp_path, images):
    x, y = images
    lst = write_image_list(tmp_path / "img", x, y)
    with make_source(image_layer(lst, 5, "new_height: 4 new_width: 5 is_color: false"), "TEST") as src:
        b = src.next_batch()["data"]
    assert b.shape == (5, 1, 4, 5)
    for i in range(5):
        gray = cv2.imread(str(tmp_path / "img" / f"{i:08d}.png"), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(b[i, 0], cv2.resize(gray, (5, 4)))


def test_image_data_shuffle_is_seeded_and_reshuffled_each_epoch(tmp_path):
    n = 12
    x = np.zeros((n, 1, 2, 2), np.uint8)
    lst = write_image_list(tmp_path / "img", x, np.arange(n))

    def epochs(seed):
        with make_source(image_layer(lst, n, "shuffle: true"), "TRAIN", seed=seed) as src:
            return [src.next_batch()["label"].astype(int).tolist() for _ in range(3)]

    a, b, c = epochs(5), epochs(5), epochs(6)
    assert a == b and a != c
    assert all(sorted(e) == list(range(n)) for e in a)
    assert a[0] != a[1] and a[0] != list(range(n))


def h5_layer(list_path, batch, shuffle=False, tops=("data", "label")):
    t = " ".join(f'top: "{x}"' for x in tops)
    return layer(f'name: "h5" type: "HDF5Data" {t} hdf5_data_param {{ source: "{list_path}" batch_size: {batch} '
                 f'shuffle: {str(shuffle).lower()} }}')


@pytest.fixture
def h5_files(tmp_path):
    rows = [np.arange(0, 3), np.arange(3, 8)]  # two files: 3 and 5 rows
    paths = []
    for i, r in enumerate(rows):
        data = np.repeat(r[:, None, None], 4, axis=1).reshape(len(r), 2, 2).astype(np.float64)
        paths.append(write_hdf5(tmp_path / f"f{i}.h5", data=data, label=r.astype(np.int32)))
    return write_hdf5_list(tmp_path / "list.txt", [p.name for p in paths])


def test_hdf5_reads_files_in_order_and_wraps(h5_files):
    with make_source(h5_layer(h5_files, 3), "TEST") as src:
        assert src.shapes() == {"data": (3, 2, 2), "label": (3,)}
        got = [src.next_batch() for _ in range(4)]
    labels = np.concatenate([b["label"] for b in got]).tolist()
    assert labels == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
    assert all(b["data"].dtype == np.float32 for b in got)
    np.testing.assert_array_equal(got[1]["data"][:, 0, 0], [3, 4, 5])


def test_hdf5_shuffle_is_seeded_per_file_and_never_interleaves(h5_files):
    def stream(seed):
        with make_source(h5_layer(h5_files, 4, shuffle=True), "TRAIN", seed=seed) as src:
            return np.concatenate([src.next_batch()["label"] for _ in range(8)]).astype(int).tolist()

    a, b, c = stream(1), stream(1), stream(2)
    assert a == b and a != c
    files = [set(range(0, 3)), set(range(3, 8))]
    pos = 0
    while pos + 5 <= len(a):  # the stream is whole files one after the other, each in some order
        f = next(f for f in files if a[pos] in f)
        assert set(a[pos:pos + len(f)]) == f
        pos += len(f)
    assert a[:8] != list(range(8))


def test_memory_data_serves_given_arrays_and_wraps():
    src = make_source(layer('name: "m" type: "MemoryData" top: "data" top: "label" memory_data_param { '
                            'batch_size: 2 channels: 1 height: 2 width: 3 }'), "TRAIN")
    assert src.shapes() == {"data": (2, 1, 2, 3), "label": (2,)}
    data = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
    src.set_input_arrays(data, np.arange(4, dtype=np.float32)[:, None, None, None].copy())
    got = [src.next_batch() for _ in range(3)]
    assert [b["label"].tolist() for b in got] == [[0, 1], [2, 3], [0, 1]]
    assert np.shares_memory(got[0]["data"], data)  # Caffe points its top at the numpy memory
    p = Prefetcher(src)  # fed from Python: runs in the caller's thread, set_input_arrays passes through
    p.set_input_arrays(data[:2].copy(), np.array([7, 8], np.float32))
    assert p.next_batch()["label"].tolist() == [7, 8]
    p.close()


def test_dummy_data_fillers():
    src = make_source(layer('name: "dd" type: "DummyData" top: "a" top: "b" top: "c" dummy_data_param { '
                            'num: 2 channels: 3 height: 1 width: 4 num: 2 channels: 1 height: 1 width: 1 '
                            'num: 1 channels: 1 height: 1 width: 1 '
                            'data_filler { type: "constant" value: 0.5 } data_filler { type: "uniform" min: 2 max: 3 } '
                            'data_filler { type: "gaussian" std: 1 } }'), "TRAIN", seed=0)
    assert src.shapes() == {"a": (2, 3, 1, 4), "b": (2, 1, 1, 1), "c": (1, 1, 1, 1)}
    b1, b2 = src.next_batch(), src.next_batch()
    assert (b1["a"] == 0.5).all() and (b2["a"] == 0.5).all()
    assert ((b1["b"] >= 2) & (b1["b"] <= 3)).all() and not np.array_equal(b1["b"], b2["b"])
    again = make_source(src.layer, "TRAIN", seed=0)
    np.testing.assert_array_equal(again.next_batch()["c"], b1["c"])
    zero = make_source(layer('name: "z" type: "DummyData" top: "z" dummy_data_param { shape { dim: 3 } }'), "TEST")
    np.testing.assert_array_equal(zero.next_batch()["z"], np.zeros(3, np.float32))


def test_sources_resolve_relative_paths_from_base_dir(tmp_path, images, monkeypatch):
    x, y = images
    write_lmdb(tmp_path / "db", x, y)
    monkeypatch.chdir(os.path.dirname(tmp_path))
    with make_source(data_layer("db", 1), "TEST", base_dir=tmp_path) as src:
        assert src.next_batch()["label"].tolist() == [3]
