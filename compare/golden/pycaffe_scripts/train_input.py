"""The golden ``conv`` net fed from Python through Input blobs: the batches the LMDB and HDF5 cases read, the
solver of ``train__sgd_step_lmdb`` (without its test net), 50 ``solver.step(1)`` calls.  Run as
``python train_input.py WORKDIR INIT.caffemodel``; prints the loss after each step and the final params, which
must equal the LMDB/HDF5 trajectories of real ``caffe train``."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import caffe  # noqa: E402
import trajectory_golden as tg  # noqa: E402
from _print import show  # noqa: E402

init = os.path.abspath(sys.argv[2])
os.chdir(sys.argv[1])
with open("net.prototxt", "w") as f:
    f.write(tg.net_text("conv", "input"))
solver_text = tg.solver_text("sgd_step_lmdb").replace(tg._TEST, "")
with open("solver.prototxt", "w") as f:
    f.write(solver_text)
caffe.set_mode_cpu()
solver = caffe.get_solver("solver.prototxt")
solver.net.copy_from(init)
net = solver.net
losses = []
for data, label in tg.conv_batches(tg.MAX_ITER):
    net.blobs["data"].data[...] = data
    net.blobs["label"].data[...] = label
    solver.step(1)
    losses.append(float(net.blobs["loss"].data))
show("iter", solver.iter)
show("losses", losses)
for name, blobs in net.params.items():
    for i, b in enumerate(blobs):
        show(f"final/{name}/{i}", b.data)
