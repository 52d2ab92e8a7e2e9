"""models.atomic: a write is complete or absent; a failed write leaves the old file and no temp file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import atomic


def test_write_and_replace(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic.write_json(p, {"x": np.int64(3), "y": np.float32(0.5), "z": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": 3, "y": 0.5, "z": [0, 1]}
    atomic.save_npy(tmp_path / "b.npy", np.eye(2))
    assert np.load(tmp_path / "b.npy").tolist() == [[1, 0], [0, 1]]


def test_failure_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "c.txt"
    atomic.write_text(p, "old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.txt"]


def test_written_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    import os
    from models import atomic
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
