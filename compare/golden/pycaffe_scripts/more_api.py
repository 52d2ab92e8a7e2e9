"""More of the pycaffe API, written against real pycaffe: MemoryData and set_input_arrays, a Data layer on an LMDB,
net.outputs order with several outputs, forward_all/forward_backward_all, forward/backward over part of the net,
a spatial reshape, legacy blob accessors, a solver's TEST net before and after its first test.  Run as
``python more_api.py WORKDIR``.  Prints ``KEY values`` lines."""
import os
import sys

import lmdb
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from _print import show  # noqa: E402

os.chdir(sys.argv[1])
caffe.set_mode_cpu()
rng = np.random.default_rng(3)

# ---- MemoryData, several outputs (net.outputs is in name order), set_input_arrays with wrap-around
MEM = """name: "mem"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 3 height: 4 width: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "constant" value: 0.01 } } }
layer { name: "zloss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "zloss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" }
"""
with open("mem.prototxt", "w") as f:
    f.write(MEM)
net = caffe.Net("mem.prototxt", caffe.TRAIN)
net.params["ip"][0].data[...] = rng.standard_normal((3, 48)).astype(np.float32) * 0.2  # no ties in Accuracy
show("mem/inputs", len(net.inputs))
show("mem/outputs", list(net.outputs))
show("mem/layers", [l.type for l in net.layers])        # with the Split layers Caffe inserts (label, ip feed two)
show("mem/layer_names", list(net._layer_names))
show("mem/blobs", list(net.blobs))
show("mem/blob_loss_weights", [net.blob_loss_weights[b] for b in net.blobs])
show("mem/loss_shape", list(net.blobs["zloss"].shape))
show("mem/loss_diff", net.blobs["zloss"].diff)
show("mem/legacy", [net.blobs["ip"].num, net.blobs["ip"].channels, net.blobs["ip"].height, net.blobs["ip"].width,
                    net.blobs["ip"].count])
X = rng.standard_normal((6, 3, 4, 4)).astype(np.float32)
Y = np.array([0, 1, 2, 1, 0, 2], np.float32)
net.set_input_arrays(X, Y)
for k in range(4):
    out = net.forward()
    show(f"mem/label{k}", net.blobs["label"].data)
    show(f"mem/zloss{k}", out["zloss"])
    show(f"mem/acc{k}", out["acc"])
net.backward()
show("mem/ip_wdiff", net.params["ip"][0].diff)
show("mem/split_diffs", [net.blobs[b].diff for b in net.blobs if "_split_" in b][:2])
net.clear_param_diffs()
show("mem/cleared", float(np.abs(net.params["ip"][0].diff).sum()))

# ---- a Data layer on an LMDB of raw Datum (key order), scale
env = lmdb.open("db", map_size=1 << 24)
imgs = rng.integers(0, 256, (5, 1, 3, 3)).astype(np.uint8)
with env.begin(write=True) as txn:
    for i, im in enumerate(imgs):
        d = caffe_pb2.Datum(channels=1, height=3, width=3, data=im.tobytes(), label=i)
        txn.put(b"%08d" % i, d.SerializeToString())
env.close()
DATA = """name: "db"
layer { name: "data" type: "Data" top: "data" top: "label" transform_param { scale: 0.5 }
  data_param { source: "db" backend: LMDB batch_size: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
"""
with open("db.prototxt", "w") as f:
    f.write(DATA)
dnet = caffe.Net("db.prototxt", caffe.TEST)
show("db/outputs", list(dnet.outputs))
for k in range(3):
    dnet.forward()
    show(f"db/data{k}", dnet.blobs["data"].data)
    show(f"db/label{k}", dnet.blobs["label"].data)

# ---- forward_all / forward_backward_all, partial forward and backward, spatial reshape
NET = """name: "part"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 2 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 4 weight_filler { type: "constant" value: 0.2 } } }
"""
with open("part.prototxt", "w") as f:
    f.write(NET)
pnet = caffe.Net("part.prototxt", caffe.TEST)
show("part/layers", [l.type for l in pnet.layers])
show("part/blobs", list(pnet.blobs))
show("part/top_names", [",".join(pnet.top_names[n]) for n in pnet._layer_names])
show("part/bottom_names", [",".join(pnet.bottom_names[n]) or "-" for n in pnet._layer_names])
for name, ps in pnet.params.items():
    for p in ps:
        p.data[...] = rng.standard_normal(p.data.shape).astype(np.float32) * 0.5
A = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
outs = pnet.forward_all(blobs=["pool1"], data=A)
show("all/keys", sorted(outs))
show("all/ip1_shape", list(outs["ip1"].shape))
show("all/ip1", outs["ip1"])
show("all/pool1", outs["pool1"])
T = rng.standard_normal((5, 4)).astype(np.float32)
fb, bd = pnet.forward_backward_all(data=A, ip1=T)
show("fball/keys", sorted(fb) + sorted(bd))
show("fball/data_diff", bd["data"])
pnet.forward(data=A[:2])
pnet.blobs["ip1"].diff[...] = T[:2]
part = pnet.backward(start="ip1", end="ip1")
show("part/keys", sorted(part))
show("part/pool1_diff", part["pool1"])
pnet.blobs["pool1"].diff[...] = 1.0
low = pnet.backward(start="pool1", diffs=["conv1"])
show("part/low_keys", sorted(low))
show("part/conv1_diff", low["conv1"])
show("part/data_diff", low["data"])
mid = pnet.forward(start="pool1", end="pool1")
show("part/mid_keys", sorted(mid))
show("part/mid", mid["pool1"])
FCN = NET[:NET.index('layer { name: "ip1"')]  # no InnerProduct: any spatial size fits
with open("fcn.prototxt", "w") as f:
    f.write(FCN)
pnet.save("part.caffemodel")
fcn = caffe.Net("fcn.prototxt", "part.caffemodel", caffe.TEST)
fcn.blobs["data"].reshape(1, 2, 10, 10)
fcn.reshape()
show("reshape/shapes", [list(fcn.blobs[b].shape) for b in ("data", "conv1", "pool1")])
show("reshape/pool1", fcn.forward(data=rng.standard_normal((1, 2, 10, 10)).astype(np.float32))["pool1"])
fcn.blobs["data"].reshape(3, 2, 7, 7)                 # no net.reshape(): the forward reshapes
fcn.blobs["data"].data[...] = rng.standard_normal((3, 2, 7, 7)).astype(np.float32)
show("reshape/auto", fcn.forward()["pool1"])
show("reshape/auto_shape", list(fcn.blobs["pool1"].shape))

# ---- a solver's TEST net: its own blobs until the first test, the TRAIN net's from then on
FEED = """name: "feed"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
with open("feed.prototxt", "w") as f:
    f.write(FEED)
with open("solver.prototxt", "w") as f:
    f.write('net: "feed.prototxt"\nbase_lr: 0.5\nlr_policy: "fixed"\nmax_iter: 10\ndisplay: 0\n'
            'test_iter: 1\ntest_interval: 2\ntest_initialization: false\nsnapshot_prefix: "x"\n')
solver = caffe.SGDSolver("solver.prototxt")
solver.net.blobs["data"].data[...] = rng.standard_normal((2, 3)).astype(np.float32)
solver.net.blobs["label"].data[...] = [0, 1]
tn = solver.test_nets[0]
solver.step(1)
show("solver/before_test", [float(np.abs(tn.params["ip"][0].data - solver.net.params["ip"][0].data).max())])
solver.step(2)
show("solver/after_test", [float(np.abs(tn.params["ip"][0].data - solver.net.params["ip"][0].data).max())])
show("solver/iter", solver.iter)
show("solver/ip_w", solver.net.params["ip"][0].data)
show("solver/ip_update", solver.net.params["ip"][0].diff)
