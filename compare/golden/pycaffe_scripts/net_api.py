"""pycaffe Net API: the three constructor signatures, forward/backward, blob and param access, in-place edits of
``.data``, reshape, save/copy_from.  Written against real pycaffe; run as ``python net_api.py WORKDIR`` with
``import caffe`` resolving to real pycaffe or to ``models.pycaffe``.  Prints ``KEY values`` lines."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caffe  # noqa: E402
from _print import show  # noqa: E402

os.chdir(sys.argv[1])
NET = """name: "api"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""
with open("api.prototxt", "w") as f:
    f.write(NET)
caffe.set_mode_cpu()
rng = np.random.default_rng(0)
net = caffe.Net("api.prototxt", caffe.TEST)
show("inputs", list(net.inputs))
show("outputs", list(net.outputs))
show("blob_names", list(net.blobs.keys()))
show("param_names", list(net.params.keys()))
show("layer_types", [layer.type for layer in net.layers])
show("layer_nblobs", [len(layer.blobs) for layer in net.layers])
for name in net.blobs:
    show(f"shape/{name}", list(net.blobs[name].shape))
for name, ps in net.params.items():
    for i, p in enumerate(ps):
        p.data[...] = rng.standard_normal(p.data.shape).astype(np.float32) * 0.3
        show(f"pshape/{name}/{i}", list(p.data.shape))
net.save("w.caffemodel")
x = rng.uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)

net.blobs["data"].data[...] = x        # in-place write, then a bare forward()
out = net.forward()
show("forward_keys", sorted(out))
show("prob", out["prob"])
show("conv1", net.blobs["conv1"].data)
show("pool1", net.blobs["pool1"].data)

net2 = caffe.Net("api.prototxt", "w.caffemodel", caffe.TEST)
show("prob_sig2", net2.forward(data=x)["prob"])
net3 = caffe.Net("api.prototxt", caffe.TEST, weights="w.caffemodel")
show("prob_sig3", net3.forward(data=x)["prob"])
net4 = caffe.Net("api.prototxt", caffe.TEST)
net4.copy_from("w.caffemodel")
show("prob_copy_from", net4.forward(data=x)["prob"])

part = net.forward(blobs=["pool1"], data=2 * x)      # forward with kwargs and extra blobs
show("part_keys", sorted(part))
show("part_pool1", part["pool1"])
show("part_prob", part["prob"])
part2 = net.forward(start="ip1", end="ip1")          # only ip1 runs (from the pool1 left above)
show("startend_keys", sorted(part2))
show("startend_ip1", part2["ip1"])

view = net.blobs["prob"].data                        # a view onto the blob: the next forward shows through it
net.forward(data=0.5 * x)
show("view_tracks", [bool(np.shares_memory(view, net.blobs["prob"].data)), bool(np.allclose(view, out["prob"]))])
show("view_values", view)
net.forward(data=x)

top = rng.standard_normal((2, 5)).astype(np.float32)
grads = net.backward(prob=top)
show("backward_keys", sorted(grads))
show("data_diff", grads["data"])
show("conv1_wdiff", net.params["conv1"][0].diff)
show("ip1_bdiff", net.params["ip1"][1].diff)
net.blobs["prob"].diff[...] = top
g2 = net.backward()
show("backward_bare_data_diff", g2["data"])

net.params["conv1"][0].data[...] *= 0.5              # in-place param edit changes the next forward
net.params["ip1"][1].data[0] = 3.0
show("edited_prob", net.forward(data=x)["prob"])

net.blobs["data"].reshape(3, 3, 8, 8)                # a new batch size; every top follows on net.reshape()
net.reshape()
for name in ("data", "conv1", "pool1", "ip1", "prob"):
    show(f"reshaped/{name}", list(net.blobs[name].data.shape))
y = rng.uniform(0, 1, (3, 3, 8, 8)).astype(np.float32)
show("reshaped_prob", net.forward(data=y)["prob"])
net.blobs["data"].reshape(2, 3, 8, 8)
net.reshape()
show("back_prob", net.forward(data=x)["prob"])
