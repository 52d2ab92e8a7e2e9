"""pycaffe caffe.io: Transformer (transpose, channel swap, raw scale, mean, input scale; preprocess/deprocess),
oversample, blobproto_to_array/array_to_blobproto.  Written against real pycaffe; run as
``python io_api.py WORKDIR``.  Not called: what real pycaffe 9.0.2 cannot run today: resize_image (an unimported
``resize``), array_to_datum / datum_to_array (numpy 2 removed ``tostring``/binary ``fromstring``) and load_image
(scikit-image >= 0.19 removed ``imread(as_grey=)``).  Prints ``KEY values`` lines."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caffe  # noqa: E402
import caffe.io  # noqa: E402
from _print import show  # noqa: E402

os.chdir(sys.argv[1])
rng = np.random.default_rng(2)
img = rng.uniform(0, 1, (6, 5, 3)).astype(np.float32)           # H x W x K in [0, 1], RGB as load_image gives
t = caffe.io.Transformer({"data": (1, 3, 6, 5)})
t.set_transpose("data", (2, 0, 1))
t.set_channel_swap("data", (2, 1, 0))
t.set_raw_scale("data", 255.0)
t.set_mean("data", np.array([104.0, 117.0, 123.0]))
t.set_input_scale("data", 0.017)
pre = t.preprocess("data", img)
show("pre_shape", list(pre.shape))
show("pre", pre)
show("de", t.deprocess("data", pre))
t2 = caffe.io.Transformer({"data": (1, 3, 6, 5)})
t2.set_transpose("data", (2, 0, 1))
t2.set_mean("data", rng.uniform(0, 1, (3, 6, 5)).astype(np.float32))
show("pre_fullmean", t2.preprocess("data", img))
# real pycaffe subtracts the mean in place on a transposed view of a float32 input: the caller's image changes
show("img_after_preprocess", img)

crops = caffe.io.oversample([img.astype(np.float32)], (4, 4))
show("oversample_shape", list(crops.shape))
show("oversample", crops)

arr = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
bp = caffe.io.array_to_blobproto(arr)
show("blobproto_shape", list(bp.shape.dim))
back = caffe.io.blobproto_to_array(bp)
show("blobproto_back_shape", list(back.shape))
show("blobproto_roundtrip", bool(np.array_equal(back, arr)))
with open("mean.binaryproto", "wb") as f:
    f.write(bp.SerializeToString())
from caffe.proto import caffe_pb2  # noqa: E402
b2 = caffe_pb2.BlobProto()
with open("mean.binaryproto", "rb") as f:
    b2.ParseFromString(f.read())
show("blobproto_file", caffe.io.blobproto_to_array(b2))
