"""One-off: write each layer's top shape as a comment into the paper's nets (deploy and train_val), as torchvision
writes ``# N x 64 x 112 x 112``. Run once after editing a net, from the repository root::

    python prototxt/tools/annotate_shapes.py [FOLDER ...]      # default: every folder with a deploy.prototxt

Nothing depends on this script (no test runs it or checks the comments); the prototxt files are the source of truth
and the comments are documentation: after a hand edit they may be stale until this is rerun (``python -m models
info NET`` always prints the current shapes). It rewrites only lines ``  # top ...`` that it wrote itself, right after ``layer {``; shapes come from
``models.load_net`` (Caffe's shape rules), batch shown as N. Data layers of train_val show their TRAIN/TEST phase.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from models.atomic import write_text  # noqa: E402

MARK = "  # top "


def _fmt(shape) -> str:
    return " x ".join(["N"] + [str(d) for d in shape[1:]]) if shape else "scalar"


def annotate(path: Path, default_phase: str) -> int:
    lines = [l for l in path.read_text().split("\n") if not l.startswith(MARK)]
    nets = {ph: models.load_net(str(path), phase=ph) for ph in ("TRAIN", "TEST")}
    out, i, n = [], 0, 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line == "layer {":
            j, name, phase = i + 1, None, default_phase
            while j < len(lines) and lines[j] != "}":
                m = re.match(r'^  name: "(.*)"$', lines[j])
                if m and name is None:
                    name = m.group(1)
                m = re.match(r"^    phase: (TRAIN|TEST)$", lines[j])
                if m:
                    phase = m.group(1)
                j += 1
            net = nets[phase]
            tops = re.findall(r'^  top: "(.*)"$', "\n".join(lines[i + 1:j]), re.M)
            shapes = []
            for t in tops:  # an in-place top keeps its blob's shape
                if t in net.blob_shapes:
                    shapes.append(f"{t}: {_fmt(net.blob_shapes[t])}")
            if shapes:
                out.append(MARK + "(" + phase + ") " + "; ".join(shapes) if path.name == "train_val.prototxt"
                           else MARK + "; ".join(shapes))
                n += 1
        i += 1
    write_text(path, "\n".join(out))
    return n


def main(argv) -> int:
    base = ROOT / "prototxt"
    folders = argv or sorted(p.parent.name for p in base.glob("*/deploy.prototxt"))
    for f in folders:
        for name, phase in (("deploy.prototxt", "TEST"), ("train_val.prototxt", "TRAIN")):
            p = base / f / name
            if p.exists():
                print(f"{p.relative_to(ROOT)}: {annotate(p, phase)} layers annotated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
