"""``caffe.proto``: the message classes of caffe.proto as ``caffe_pb2`` (built by :mod:`models.schema`)."""
from . import caffe_pb2  # noqa: F401
