"""Bad data input: one line naming the layer and the file and what was expected, as a models.errors.InputError
(the CLI prints it and exits 2)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from google.protobuf import text_format

from models.cli import dispatch
from models.data import (EmptySourceError, LabelShapeError, MissingDependencyError, MissingSourceError,
                         SourceShapeError, check_source_shapes, make_source, write_hdf5, write_hdf5_list,
                         write_leveldb, write_lmdb, write_mean_file)
from models.data.deps import require
from models.errors import InputError, NetDefinitionError
from models.schema import pb

pytest.importorskip("lmdb")
pytest.importorskip("plyvel")
pytest.importorskip("h5py")
pytest.importorskip("cv2")


def layer(text):
    return text_format.Parse(text, pb.LayerParameter())


def data(path, backend="LMDB", transform=""):
    return layer(f'name: "mnist" type: "Data" top: "data" top: "label" data_param {{ source: "{path}" '
                 f'batch_size: 2 backend: {backend} }} {transform}')


def one_line(exc_info, *parts):
    msg = str(exc_info.value)
    assert isinstance(exc_info.value, InputError)
    assert "\n" not in msg
    for p in parts:
        assert str(p) in msg, (p, msg)
    return msg


@pytest.fixture
def x():
    return np.random.default_rng(0).integers(0, 256, (3, 1, 4, 4), dtype=np.uint8)


@pytest.mark.parametrize("backend", ["LMDB", "LEVELDB"])
def test_missing_database(tmp_path, backend):
    with pytest.raises(MissingSourceError) as e:
        make_source(data(tmp_path / "nope", backend), "TRAIN")
    one_line(e, "Data layer 'mnist'", tmp_path / "nope", "does not exist")


def test_wrong_backend_names_the_right_one(tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(3))
    with pytest.raises(InputError) as e:
        make_source(data(tmp_path / "db", "LEVELDB"), "TRAIN")
    one_line(e, "'mnist'", tmp_path / "db", "is an LMDB", "backend: LMDB")


@pytest.mark.parametrize("backend,writer", [("LMDB", write_lmdb), ("LEVELDB", write_leveldb)])
def test_empty_database(tmp_path, backend, writer):
    writer(tmp_path / "db", np.zeros((0, 1, 2, 2), np.uint8), np.zeros(0, int))
    with pytest.raises(EmptySourceError) as e:
        make_source(data(tmp_path / "db", backend), "TRAIN")
    one_line(e, "'mnist'", tmp_path / "db", "no records")


def test_crop_larger_than_the_image(tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(3))
    with pytest.raises(SourceShapeError) as e:
        make_source(data(tmp_path / "db", transform="transform_param { crop_size: 5 }"), "TRAIN")
    one_line(e, "'mnist'", "crop_size 5", "4x4", tmp_path / "db")


def test_mean_file_of_other_channels(tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(3))
    write_mean_file(tmp_path / "mean.binaryproto", np.zeros((3, 4, 4)))
    with pytest.raises(SourceShapeError) as e:
        make_source(data(tmp_path / "db", transform=f'transform_param {{ mean_file: "{tmp_path}/mean.binaryproto" }}'),
                    "TRAIN")
    one_line(e, "'mnist'", "mean.binaryproto", "(3, 4, 4)", "(1, 4, 4)")


def test_mean_value_count(tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(3))
    with pytest.raises(SourceShapeError) as e:
        make_source(data(tmp_path / "db", transform="transform_param { mean_value: 1 mean_value: 2 }"), "TRAIN")
    one_line(e, "'mnist'", "mean_value", "channels: 1")


def test_source_shape_the_net_cannot_take(tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(3))
    src = make_source(data(tmp_path / "db"), "TRAIN")
    check_source_shapes(src, {"data": (2, 1, 4, 4)})
    with pytest.raises(SourceShapeError) as e:
        check_source_shapes(src, {"data": (2, 3, 4, 4)})
    one_line(e, "Data layer 'mnist'", tmp_path / "db", "(2, 1, 4, 4)", "(2, 3, 4, 4)")
    src.close()


def test_missing_image_list_and_image(tmp_path, x):
    text = 'name: "img" type: "ImageData" top: "data" top: "label" image_data_param {{ source: "{}" batch_size: 1 }}'
    with pytest.raises(MissingSourceError) as e:
        make_source(layer(text.format(tmp_path / "list.txt")), "TRAIN")
    one_line(e, "ImageData layer 'img'", tmp_path / "list.txt")
    (tmp_path / "list.txt").write_text("gone.png 1\n")
    with pytest.raises(MissingSourceError) as e:
        make_source(layer(text.format(tmp_path / "list.txt")), "TRAIN")
    one_line(e, "'img'", "gone.png", tmp_path / "list.txt")
    (tmp_path / "list.txt").write_text("a.png\n")
    with pytest.raises(SourceShapeError) as e:
        make_source(layer(text.format(tmp_path / "list.txt")), "TRAIN")
    one_line(e, "'img'", f"{tmp_path / 'list.txt'}:1", "PATH LABEL")
    (tmp_path / "list.txt").write_text("\n")
    with pytest.raises(EmptySourceError) as e:
        make_source(layer(text.format(tmp_path / "list.txt")), "TRAIN")
    one_line(e, "'img'", "empty")


def h5(list_path, tops=("data", "label"), extra=""):
    t = " ".join(f'top: "{x}"' for x in tops)
    return layer(f'name: "h5" type: "HDF5Data" {t} hdf5_data_param {{ source: "{list_path}" batch_size: 2 }} {extra}')


def test_hdf5_bad_inputs(tmp_path):
    with pytest.raises(MissingSourceError) as e:
        make_source(h5(tmp_path / "list.txt"), "TRAIN")
    one_line(e, "HDF5Data layer 'h5'", tmp_path / "list.txt")
    write_hdf5_list(tmp_path / "list.txt", [tmp_path / "gone.h5"])
    with pytest.raises(MissingSourceError) as e:
        make_source(h5(tmp_path / "list.txt"), "TRAIN")
    one_line(e, "'h5'", "gone.h5")
    write_hdf5(tmp_path / "a.h5", data=np.zeros((4, 2)), label=np.zeros(3))
    write_hdf5_list(tmp_path / "list.txt", [tmp_path / "a.h5"])
    with pytest.raises(LabelShapeError) as e:
        make_source(h5(tmp_path / "list.txt"), "TRAIN")
    one_line(e, "'h5'", "a.h5", "'label' has 3 rows", "has 4")
    with pytest.raises(InputError) as e:
        make_source(h5(tmp_path / "list.txt", tops=("data", "target")), "TRAIN")
    one_line(e, "'h5'", "a.h5", "no dataset 'target'")
    write_hdf5_list(tmp_path / "list.txt", [])
    with pytest.raises(EmptySourceError) as e:
        make_source(h5(tmp_path / "list.txt"), "TRAIN")
    one_line(e, "'h5'", "list.txt")
    with pytest.raises(NetDefinitionError, match="does not transform"):
        make_source(h5(tmp_path / "list.txt", extra="transform_param { scale: 2 }"), "TRAIN")


def test_memory_data_label_and_batch_checks():
    src = make_source(layer('name: "mem" type: "MemoryData" top: "data" top: "label" memory_data_param { '
                            'batch_size: 2 channels: 1 height: 2 width: 2 }'), "TRAIN")
    with pytest.raises(LabelShapeError) as e:
        src.set_input_arrays(np.zeros((4, 1, 2, 2), np.float32), np.zeros(3, np.float32))
    one_line(e, "MemoryData layer 'mem'", "(3,)", "4 data rows")
    with pytest.raises(SourceShapeError) as e:
        src.set_input_arrays(np.zeros((3, 1, 2, 2), np.float32), np.zeros(3, np.float32))
    one_line(e, "'mem'", "multiple of batch size 2")
    with pytest.raises(SourceShapeError) as e:
        src.set_input_arrays(np.zeros((2, 3, 2, 2), np.float32), np.zeros(2, np.float32))
    one_line(e, "'mem'", "(N, 1, 2, 2)")
    with pytest.raises(SourceShapeError, match="float32"):
        src.set_input_arrays(np.zeros((2, 1, 2, 2)), np.zeros(2, np.float32))
    with pytest.raises(InputError, match="set_input_arrays"):
        src.next_batch()


def test_not_a_source():
    with pytest.raises(NetDefinitionError, match="fed by the caller"):
        make_source(layer('name: "in" type: "Input" top: "data"'), "TRAIN")
    with pytest.raises(NetDefinitionError, match="has 1 tops"):
        make_source(layer('name: "m" type: "MemoryData" top: "data" memory_data_param { batch_size: 1 channels: 1 '
                          'height: 1 width: 1 }'), "TRAIN")


def test_missing_package_is_one_line(monkeypatch, tmp_path, x):
    write_lmdb(tmp_path / "db", x, np.arange(3))
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(MissingDependencyError) as e:
        make_source(data(tmp_path / "db"), "TRAIN")
    msg = str(e.value)
    assert "\n" not in msg and "'lmdb'" in msg and "Data layer 'mnist'" in msg and "pip install lmdb" in msg
    assert isinstance(e.value, ImportError)
    with pytest.raises(MissingDependencyError, match="'opencv-python-headless'"):
        monkeypatch.setitem(sys.modules, "cv2", None)
        require("cv2")


def test_cli_turns_a_data_error_into_one_line_and_exit_2(tmp_path, capsys):
    def boom(args):
        make_source(data(tmp_path / "nope"), "TRAIN")

    sub = [("boom", None, "raise a data error")]
    import models.cli as cli

    cli_resolve = cli._resolve
    try:
        cli._resolve = lambda module, name: (lambda p: None, boom)
        assert dispatch("prog", "test", sub, ["boom"]) == 2
    finally:
        cli._resolve = cli_resolve
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Data layer 'mnist'" in err and "nope" in err
