"""``caffe.proto.caffe_pb2``: every message class and enum value of caffe.proto (``NetParameter``, ``BlobProto``,
``TRAIN``, ...), looked up in :data:`models.schema.pb` at each access, so that a fork's schema loaded later with
``models.schema.use_proto`` is the one scripts see."""
from models.schema import pb as _pb


def __getattr__(name):
    try:
        return getattr(_pb, name)
    except AttributeError:
        raise AttributeError(f"module 'caffe_pb2' has no attribute '{name}'") from None


def __dir__():
    return sorted(k for k in vars(_pb) if not k.startswith("__"))
