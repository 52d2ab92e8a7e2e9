"""Peak memory of reading a VGG16-sized (~550 MB) caffemodel, as a ratio to the file size.

Issue: "A 600 MB file (VGG16's size) must load; measure its peak memory and keep it below 2x the file size."
Writes a V1 caffemodel with VGG16's parameter shapes (random values, written by the project's own writer, the
same legacy form as the public VGG_ILSVRC_16_layers.caffemodel), then, in a fresh subprocess, reads it
(read_caffemodel returns private numpy arrays, ready to load into a module) and reports the peak
resident set size (VmHWM) over the baseline of the interpreter with numpy and protobuf imported.

Usage: python benchmarks/caffemodel_memory.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

VGG16 = textwrap.dedent('''
    name: "VGG_ILSVRC_16_layers"
    input: "data"
    input_dim: 1 input_dim: 3 input_dim: 224 input_dim: 224
''') + "".join(
    f'layer {{ name: "{n}" type: "Convolution" bottom: "{b}" top: "{n}" convolution_param {{ num_output: {c} '
    f'kernel_size: 3 pad: 1 }} }}\nlayer {{ name: "relu{n[4:]}" type: "ReLU" bottom: "{n}" top: "{n}" }}\n'
    + (f'layer {{ name: "pool{n[4]}" type: "Pooling" bottom: "{n}" top: "pool{n[4]}" pooling_param {{ pool: MAX '
       f'kernel_size: 2 stride: 2 }} }}\n' if last else "")
    for n, b, c, last in [
        ("conv1_1", "data", 64, 0), ("conv1_2", "conv1_1", 64, 1),
        ("conv2_1", "pool1", 128, 0), ("conv2_2", "conv2_1", 128, 1),
        ("conv3_1", "pool2", 256, 0), ("conv3_2", "conv3_1", 256, 0), ("conv3_3", "conv3_2", 256, 1),
        ("conv4_1", "pool3", 512, 0), ("conv4_2", "conv4_1", 512, 0), ("conv4_3", "conv4_2", 512, 1),
        ("conv5_1", "pool4", 512, 0), ("conv5_2", "conv5_1", 512, 0), ("conv5_3", "conv5_2", 512, 1)]
) + textwrap.dedent('''
    layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 4096 } }
    layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 4096 } }
    layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 1000 } }
''')

READER = textwrap.dedent('''
    import sys
    import numpy as np
    import models

    def hwm():  # peak RSS of this process image (ru_maxrss would carry the parent's peak across exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    base = hwm()
    m = models.read_caffemodel(sys.argv[1])
    total = 0
    for name, type_, blobs in m.layers:
        for b in blobs:
            assert b.flags.writeable  # private, materialised arrays (not views on the file)
            total += b.size
    peak = hwm()
    print(base * 1024, peak * 1024, total)
''')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="write the file into this folder and keep it")
    args = ap.parse_args()
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import models
    net = models.load_net(VGG16)
    folder = args.keep or tempfile.mkdtemp()
    path = os.path.join(folder, "vgg16_shaped.caffemodel")
    rng = np.random.default_rng(0)
    params = {l.name: [rng.standard_normal(s, dtype=np.float32) * 0.01 for s in l.param_shapes]
              for l in net.layers if l.param_shapes}
    models.write_caffemodel(path, net, params, version="V1")
    del params
    size = os.path.getsize(path)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", READER, path], capture_output=True, text=True, env=env, check=True)
    base, peak, count = (int(x) for x in out.stdout.split())
    print(f"file: {size / 2**20:.1f} MiB, {count:,} parameters (V1 form, legacy 4-D shapes)")
    print(f"peak RSS while reading + materialising: {peak / 2**20:.1f} MiB; over the interpreter baseline: "
          f"{(peak - base) / 2**20:.1f} MiB = {(peak - base) / size:.2f}x the file size (limit 2x)")
    if not args.keep:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
