"""A user's (fork's) caffe.proto: ``--proto FILE`` and ``models.load_net(path, proto=FILE)`` (models.schema.use_proto).

The schema is process-wide, so every case runs in a subprocess. The fork here is BVLC's caffe.proto plus one
``foo_param`` field in LayerParameter (number 9001, as forks number theirs past BVLC's), read by a ``Foo`` layer
plugin: the text parser refuses the net with BVLC's schema and reads it with the fork's."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NET = """name: "fork"
input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer { name: "foo" type: "Foo" bottom: "data" top: "foo" foo_param { gain: 3 } }
"""

PLUGIN = textwrap.dedent('''
    import torch, models

    class Foo(torch.nn.Module):
        def __init__(self, gain):
            super().__init__()
            self.gain = gain
        def forward(self, x):
            return x * self.gain

    def register():
        models.register_layer("Foo", shape=lambda lp, b: ([tuple(b[0])], []),
                              build=lambda layer, phase: Foo(layer.proto.foo_param.gain))
''')


@pytest.fixture()
def fork(tmp_path):
    text = (ROOT / "models" / "caffe.proto").read_text()
    head = "message LayerParameter {\n"
    assert head in text
    text = text.replace(head, head + "  optional FooParameter foo_param = 9001;\n", 1)
    text += "\nmessage FooParameter {\n  optional float gain = 1 [default = 1];\n}\n"
    (tmp_path / "fork_caffe.proto").write_text(text)
    (tmp_path / "net.prototxt").write_text(NET)
    site = tmp_path / "site"
    site.mkdir()
    (site / "foo_layer.py").write_text(PLUGIN)
    info = site / "foo_layer-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: foo-layer\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[radiogenomics_replica.caffe_layers]\nfoo = foo_layer:register\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), RGR_CACHE_DIR=str(tmp_path / "cache"))
    return tmp_path, env


def _run(args, env, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180)


def test_bvlc_schema_refuses_the_fork_field_naming_file_and_line(fork):
    d, env = fork
    p = _run(["-m", "models", "info", "net.prototxt"], env, d)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "net.prototxt:3" in lines[0] and "foo_param" in lines[0]


def test_proto_option_reads_the_fork_field_and_the_plugin_uses_it(fork):
    d, env = fork
    p = _run(["-m", "models", "info", "--proto", "fork_caffe.proto", "net.prototxt"], env, d)
    assert p.returncode == 0, p.stderr
    assert "Foo" in p.stdout


def test_load_net_with_proto_runs_and_a_caffemodel_keeps_the_fork_field(fork):
    d, env = fork
    script = textwrap.dedent('''
        import numpy as np, torch, models
        net = models.load_net("net.prototxt", proto="fork_caffe.proto")
        assert net.layers[0].proto.foo_param.gain == 3
        out = models.to_torch(net)(torch.ones(1, 2, 3, 3), blobs=["foo"])["foo"]
        assert torch.equal(out, torch.full((1, 2, 3, 3), 3.0)), out
        models.write_caffemodel("w.caffemodel", net, {})
        back = models.read_caffemodel("w.caffemodel")
        raw = models.schema.pb.NetParameter.FromString(open("w.caffemodel", "rb").read())
        assert raw.layer[0].foo_param.gain == 3
        try:
            models.load_net("net.prototxt", proto="other.proto")
        except models.NetDefinitionError as e:
            assert "one caffe.proto per process" in str(e), e
        else:
            raise AssertionError("a second proto was accepted")
        print("ok")
    ''')
    (d / "other.proto").write_text((d / "fork_caffe.proto").read_text())
    p = _run(["-c", script], env, d)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


@pytest.mark.parametrize("content, expect", [
    (None, "no such file"),
    ('syntax = "proto2";\npackage caffe;\nmessage NetParameter { optional strin name = 1; }\n', "strin"),
    ('syntax = "proto2";\npackage caffe;\nmessage Datum { optional int32 channels = 1; }\n', "NetParameter"),
])
def test_a_bad_proto_is_one_line_and_exit_2(fork, content, expect):
    d, env = fork
    if content is not None:
        (d / "bad.proto").write_text(content)
    p = _run(["-m", "models", "info", "--proto", "bad.proto", "net.prototxt"], env, d)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "bad.proto" in lines[0], p.stderr
