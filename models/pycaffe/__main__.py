"""``python -m models.pycaffe SCRIPT [ARGS...]``: run a pycaffe script unchanged, its ``import caffe`` resolving to
:mod:`models.pycaffe`. Bad input the project detects (a missing file, a net Caffe refuses) ends with one line on
stderr and exit status 2, as the ``models`` CLI does."""
from __future__ import annotations

import os
import runpy
import sys

from models.errors import CaffeError


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    script = argv[0]
    if not os.path.isfile(script):
        print(f"error: {script}: no such script", file=sys.stderr)
        return 2
    import models.pycaffe as pycaffe

    pycaffe.install_as_caffe()
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except CaffeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
