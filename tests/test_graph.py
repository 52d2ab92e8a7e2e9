"""load_net: phase filtering, V1 upgrade, inputs, Caffe's shape inference (pooling ceil + clip)."""
import pytest

import models
from models.shapes import pool_output_size

HEAD = 'name: "t"\ninput: "data"\ninput_dim: 1 input_dim: 3 input_dim: {h} input_dim: {w}\n'


def net_with(body, h=8, w=8, **kw):
    return models.load_net(HEAD.format(h=h, w=w) + body, **kw)


@pytest.mark.parametrize("size,k,s,p,expected", [
    (112, 3, 2, 0, 56),   # GoogLeNet pool1: floor would give 55 (notes)
    (32, 3, 2, 0, 16),    # CIFAR-10 full pool1: 16/8/4, not 15/7/3
    (16, 3, 2, 0, 8), (8, 3, 2, 0, 4),
    (6, 2, 3, 0, 3),      # p = 0, k < s: the third window starts at the edge (no clip without padding)
    (5, 2, 2, 1, 3),      # ceil gives 4; (4-1)*2 >= 5+1 so Caffe clips to 3
    (4, 2, 2, 1, 3),      # ceil gives 3; (3-1)*2 = 4 < 5: kept
    (7, 7, 1, 0, 1),      # GoogLeNet pool5
    (14, 3, 1, 1, 14),    # inception pool branch
])
def test_pool_output_size_matches_caffe_rule(size, k, s, p, expected):
    assert pool_output_size(size, k, s, p) == expected


def test_pool_floor_round_mode():
    net = net_with('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                   'pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR } }', 112, 112)
    assert net.blob_shapes["p"] == (1, 3, 55, 55)


def test_conv_dilation_group_and_separate_hw():
    net = net_with('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
                   'num_output: 6 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 '
                   'dilation: 2 group: 3 } }', 9, 7)
    layer = net.layer("c")
    # H: (9 + 2 - (2*2+1)) // 2 + 1 = 4 ; W: (7 - 1) // 1 + 1 = 7
    assert layer.top_shapes == [(1, 6, 4, 7)]
    assert layer.param_shapes == [(6, 1, 3, 1), (6,)]


def test_inner_product_axis_and_transpose():
    net = net_with('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                   'inner_product_param { num_output: 5 axis: 2 transpose: true } }', 4, 6)
    layer = net.layer("fc")
    assert layer.top_shapes == [(1, 3, 5)]
    assert layer.param_shapes == [(24, 5), (5,)]


def test_concat_slice_flatten_reshape():
    body = '''
layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { axis: 1 slice_point: 1 } }
layer { name: "c" type: "Concat" bottom: "b" bottom: "a" bottom: "b" top: "c" }
layer { name: "f" type: "Flatten" bottom: "c" top: "f" }
layer { name: "r" type: "Reshape" bottom: "f" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 8 } } }
'''
    net = net_with(body)
    assert net.blob_shapes["a"] == (1, 1, 8, 8) and net.blob_shapes["b"] == (1, 2, 8, 8)
    assert net.blob_shapes["c"] == (1, 5, 8, 8)
    assert net.blob_shapes["f"] == (1, 320)
    assert net.blob_shapes["r"] == (1, 40, 8)


def test_phase_filtering_and_loss_weights():
    body = '''
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" loss_weight: 0.3
        include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" exclude { phase: TRAIN } }
'''
    train = net_with(body, phase="TRAIN")
    test = net_with(body, phase="TEST")
    assert [l.name for l in train.layers] == ["fc", "loss"]
    assert [l.name for l in test.layers] == ["fc", "prob"]
    assert train.layer("loss").loss_weights == [pytest.approx(0.3)]
    assert train.blob_shapes["loss"] == ()
    assert test.outputs == ["label", "prob"]


def test_v1_net_is_upgraded_with_lr_and_decay_mults():
    text = '''
name: "v1"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 5 input_dim: 5
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2
         weight_decay: 1 weight_decay: 0 convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
'''
    net = models.load_net(text)
    assert [l.type for l in net.layers] == ["Convolution", "ReLU", "Pooling"]
    conv = net.layer("conv")
    assert conv.lr_mults == [1, 2] and conv.decay_mults == [1, 0]
    assert net.layer("relu").in_place
    assert net.blob_shapes["pool"] == (2, 4, 2, 2)


def test_input_forms_and_batch_override():
    by_shape = models.load_net('input: "x"\ninput_shape { dim: 10 dim: 3 dim: 4 dim: 4 }\n'
                               'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }', batch=1)
    assert by_shape.inputs == {"x": (1, 3, 4, 4)}
    by_layer = models.load_net('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
                               'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }', batch=7)
    assert by_layer.blob_shapes["y"] == (7, 3)
    data = models.load_net('layer { name: "d" type: "Data" top: "data" top: "label" data_param { batch_size: 32 } '
                           'transform_param { crop_size: 227 } }\n'
                           'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }', phase="TRAIN")
    assert data.inputs == {"data": (32, 3, 227, 227), "label": (32,)}
    hdf5 = 'layer { name: "d" type: "HDF5Data" top: "data" hdf5_data_param { source: "x" batch_size: 4 } }'
    with pytest.raises(models.NetDefinitionError, match="input_shapes"):
        models.load_net(hdf5)
    assert models.load_net(hdf5, input_shapes={"data": (4, 1, 2, 2)}).inputs["data"] == (4, 1, 2, 2)


def test_errors_name_the_layer_and_shapes():
    with pytest.raises(models.UnknownLayerError, match=r"layer 'w' has type 'Wobble'.*supported types: .*Convolution"):
        net_with('layer { name: "w" type: "Wobble" bottom: "data" top: "w" }')
    with pytest.raises(models.ShapeError, match=r"layer 'c' \(Concat\), bottoms \[data=\(1, 3, 8, 8\), p=\(1, 3, 4, 4\)\]"):
        net_with('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 stride: 2 } }\n'
                 'layer { name: "c" type: "Concat" bottom: "data" bottom: "p" top: "c" }')
    with pytest.raises(models.NetDefinitionError, match="needs bottom 'nope'"):
        net_with('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }')
    with pytest.raises(models.ShapeError, match="pad .* must be smaller than kernel"):
        net_with('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 pad: 2 } }')


def test_alexnet_grouped_convolution_counts():
    """BVLC AlexNet: 60,965,224 learnable parameters (the well-known figure), 724.4M conv+FC MACC."""
    net = models.load_net("tests/data/bvlc_alexnet_deploy.prototxt", batch=1)
    learnable = sum(__import__("math").prod(s) for l in net.layers for s in l.param_shapes)
    assert learnable == 60_965_224
    assert net.layer("conv2").param_shapes[0] == (256, 48, 5, 5)
    cost = models.net_cost(net, count_lrn=False)
    assert cost.macc == 724_406_816
    with_lrn = models.net_cost(net)
    assert with_lrn.macc - cost.macc == (96 * 55 * 55 + 256 * 27 * 27) * 5
    assert with_lrn.params == learnable + 4


def test_bvlc_googlenet_imagenet_deploy_counts():
    """prototxt/googlenet_imagenet is the BVLC bvlc_googlenet deploy layout: 6,998,552 learnable parameters."""
    import math
    net = models.load_net("prototxt/googlenet_imagenet/deploy.prototxt", batch=1)
    assert sum(math.prod(s) for l in net.layers for s in l.param_shapes) == 6_998_552
    assert net.blob_shapes["pool1/3x3_s2"] == (1, 64, 56, 56)       # ceil rule (floor would give 55)
    assert net.blob_shapes["inception_5b/output"] == (1, 1024, 7, 7)
    assert net.blob_shapes["prob"] == (1, 1000)
