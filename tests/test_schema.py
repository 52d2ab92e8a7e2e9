"""The project's caffe.proto keeps upstream Caffe's field numbers (so real files parse)."""
import pytest

from models.schema import pb

# (message, field, upstream number) from BVLC Caffe src/caffe/proto/caffe.proto.
UPSTREAM = [
    ("NetParameter", "name", 1), ("NetParameter", "layers", 2), ("NetParameter", "input", 3),
    ("NetParameter", "input_dim", 4), ("NetParameter", "state", 6), ("NetParameter", "input_shape", 8),
    ("NetParameter", "layer", 100),
    ("LayerParameter", "blobs", 7), ("LayerParameter", "param", 6), ("LayerParameter", "include", 8),
    ("LayerParameter", "convolution_param", 106), ("LayerParameter", "pooling_param", 121),
    ("LayerParameter", "lrn_param", 118), ("LayerParameter", "inner_product_param", 117),
    ("LayerParameter", "batch_norm_param", 139), ("LayerParameter", "scale_param", 142),
    ("LayerParameter", "input_param", 143), ("LayerParameter", "eltwise_param", 110),
    ("BlobProto", "data", 5), ("BlobProto", "double_data", 8), ("BlobProto", "shape", 7), ("BlobProto", "num", 1),
    ("ParamSpec", "lr_mult", 3), ("ParamSpec", "decay_mult", 4),
    ("V1LayerParameter", "blobs", 6), ("V1LayerParameter", "blobs_lr", 7), ("V1LayerParameter", "weight_decay", 8),
    ("V1LayerParameter", "type", 5), ("V1LayerParameter", "convolution_param", 10),
    ("PoolingParameter", "round_mode", 13), ("LRNParameter", "k", 5), ("LRNParameter", "norm_region", 4),
    ("ConvolutionParameter", "dilation", 18), ("InnerProductParameter", "transpose", 6),
    ("SolverParameter", "base_lr", 5), ("SolverParameter", "lr_policy", 8), ("SolverParameter", "stepsize", 13),
    ("SolverParameter", "iter_size", 36), ("SolverParameter", "stepvalue", 34), ("SolverParameter", "type", 40),
    ("FillerParameter", "variance_norm", 8),
]


@pytest.mark.parametrize("message,field,number", UPSTREAM)
def test_field_numbers_match_upstream(message, field, number):
    assert getattr(pb, message).DESCRIPTOR.fields_by_name[field].number == number


def test_required_parameter_messages_exist():
    for name in ["InputParameter", "DataParameter", "ImageDataParameter", "HDF5DataParameter", "MemoryDataParameter",
                 "ConvolutionParameter", "PoolingParameter", "LRNParameter", "ReLUParameter", "SigmoidParameter",
                 "TanHParameter", "PowerParameter", "InnerProductParameter", "DropoutParameter", "ConcatParameter",
                 "SliceParameter", "EltwiseParameter", "BatchNormParameter", "ScaleParameter", "BiasParameter",
                 "FlattenParameter", "ReshapeParameter", "SoftmaxParameter", "AccuracyParameter", "LossParameter",
                 "SolverParameter", "NetStateRule", "NetState", "FillerParameter", "V1LayerParameter"]:
        assert hasattr(pb, name), name


def test_v1_layer_type_enum_values_are_upstream():
    enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    assert enum.values_by_name["CONVOLUTION"].number == 4
    assert enum.values_by_name["INNER_PRODUCT"].number == 14
    assert enum.values_by_name["SOFTMAX_LOSS"].number == 21
    assert enum.values_by_name["POOLING"].number == 17
