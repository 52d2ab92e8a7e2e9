"""``caffe.proto.caffe_pb2``: every message class and enum value of caffe.proto (``NetParameter``, ``BlobProto``,
``TRAIN``, ...), the same objects as :data:`models.schema.pb`."""
from models.schema import pb as _pb

globals().update({k: v for k, v in vars(_pb).items() if not k.startswith("__")})
