"""Binary caffemodel I/O: V1 and current form, float and double, bit-identical round trips, clear errors."""
import numpy as np
import pytest

import models
from models.schema import pb

NET = '''
name: "small"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 2 } }
'''


def make(version="V2"):
    # BatchNorm did not exist in the V1 era: a V1 file cannot hold it (downgrade refuses it, tested below).
    net = models.load_net(NET if version == "V2" else NET.replace('type: "BatchNorm"', 'type: "Dropout"'))
    rng = np.random.default_rng(1)
    params = {l.name: [rng.standard_normal(s).astype(np.float32) for s in l.param_shapes]
              for l in net.layers if l.param_shapes}
    return net, params


@pytest.fixture
def net_and_params():
    return make("V2")


@pytest.mark.parametrize("version", ["V1", "V2"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_identical(tmp_path, version, dtype):
    net, params = make(version)
    a, b = tmp_path / "a.caffemodel", tmp_path / "b.caffemodel"
    models.write_caffemodel(a, net, params, version=version, dtype=dtype)
    model = models.read_caffemodel(a)
    assert model.version == version
    assert [n for n, _, _ in model.layers] == ["conv", "relu", "bn", "fc"]
    assert [t for _, t, _ in model.layers] == ["Convolution", "ReLU", "BatchNorm" if version == "V2" else "Dropout",
                                               "InnerProduct"]
    loaded = models.params_for_net(net, model, strict=True)
    for name, arrays in params.items():
        for want, got in zip(arrays, loaded[name]):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got.astype(np.float32), want)
    models.write_caffemodel(b, net, loaded, version=version, dtype=dtype)
    assert a.read_bytes() == b.read_bytes()


def test_v1_uses_legacy_layers_field_and_4d_shapes(tmp_path):
    net, params = make("V1")
    path = tmp_path / "v1.caffemodel"
    models.write_caffemodel(path, net, params, version="V1")
    proto = pb.NetParameter.FromString(path.read_bytes())   # plain protobuf agrees with the fast reader
    assert len(proto.layers) == 4 and len(proto.layer) == 0
    fc = proto.layers[3]
    assert (fc.blobs[0].num, fc.blobs[0].channels, fc.blobs[0].height, fc.blobs[0].width) == (1, 1, 2, 144)
    assert list(fc.blobs_lr) == [] and fc.name == "fc"
    np.testing.assert_array_equal(np.array(fc.blobs[1].data, np.float32), params["fc"][1])


def test_reads_file_written_by_plain_protobuf_with_unpacked_and_shape_fields(tmp_path):
    net = pb.NetParameter(name="p")
    layer = net.layer.add(name="fc", type="InnerProduct")
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1, 2, 3, 4, 5, 6])
    path = tmp_path / "p.caffemodel"
    path.write_bytes(net.SerializeToString())
    model = models.read_caffemodel(path)
    np.testing.assert_array_equal(model.layers[0][2][0], np.arange(1, 7, dtype=np.float32).reshape(2, 3))


def test_weights_that_do_not_fit_name_layer_blob_and_shapes(net_and_params):
    net, params = net_and_params
    params["fc"][0] = np.zeros((3, 144), np.float32)
    with pytest.raises(models.WeightsError, match=r"layer 'fc' \(InnerProduct\) blob 0: the net expects shape "
                                                  r"\(2, 144\), the weights have \(3, 144\)"):
        models.check_params(net, params)


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b'name: "AlexNet"\nlayer {\n', "text file"),
    (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "not a valid binary caffemodel"),
    (b"\x0a\x05ab", "truncated"),
])
def test_bad_files_raise_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(content)
    with pytest.raises(models.CaffemodelFormatError, match=match):
        models.read_caffemodel(path)


def test_truncated_file_at_every_cut_raises_only_format_errors(tmp_path, net_and_params):
    net, params = net_and_params
    path = tmp_path / "m.caffemodel"
    models.write_caffemodel(path, net, params)
    data = path.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    for n in range(1, len(data), 7):
        cut.write_bytes(data[:n])
        try:
            models.read_caffemodel(cut)
        except models.CaffemodelFormatError:
            pass


def test_v1_refuses_layers_that_v1_cannot_express(tmp_path, net_and_params):
    net, params = net_and_params
    with pytest.raises(models.NetDefinitionError, match="layer 'bn' of type BatchNorm cannot be written in the V1"):
        models.write_caffemodel(tmp_path / "x.caffemodel", net, params, version="V1")
    assert not (tmp_path / "x.caffemodel").exists()
