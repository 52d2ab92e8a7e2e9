"""Caffe's log lines: glog's prefix and C++ ``std::ostream << float`` number formatting.

Caffe logs through glog; a line reads ``I1204 13:20:01.123456  4242 solver.cpp:243] TEXT``: severity, month/day,
time with microseconds, the thread id right-aligned in 5 columns, the source file and line, ``] ``, then the text.
Log parsers (Caffe's tools/extra/parse_log.py, the parity tests) match the text after ``] ``, so the text is
Caffe's verbatim; the file:line in the prefix names the Caffe source that prints the same line.
"""
from __future__ import annotations

import contextlib
import datetime
import math
import os
import sys

import numpy as np


def fmt(value) -> str:
    """A number as ``std::cout << Dtype(value)`` prints it: float32, 6 significant digits (``%g``); ``inf``,
    ``-inf``, ``nan`` (glibc prints ``-nan`` for a negative NaN)."""
    v = float(np.float32(value))
    if math.isnan(v):
        return "-nan" if math.copysign(1.0, v) < 0 else "nan"
    return "%g" % v


class CaffeLog:
    """Write glog-style lines to a stream (stderr by default), like Caffe's ``LOG(INFO)``.

    ``lines`` keeps the texts (after ``] ``) for callers and tests that read them back.
    """

    def __init__(self, stream=None, keep: bool = False, quiet: bool = False):
        self.stream = stream
        self.keep = keep
        self.quiet = quiet
        self.lines: list[str] = []
        self._pid = os.getpid()
        self._held: list | None = None

    def __call__(self, text: str, where: str = "solver.cpp:0", severity: str = "I") -> None:
        if self.keep:
            self.lines.append(text)
        if self.quiet:
            return
        now = datetime.datetime.now()
        line = f"{severity}{now:%m%d %H:%M:%S}.{now.microsecond:06d} {self._pid:5d} {where}] {text}\n"
        if self._held is not None:
            self._held.append(line)
            return
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line)
        stream.flush()

    @contextlib.contextmanager
    def held(self):
        """Hold the lines logged inside the block; print them when it succeeds, drop them when it raises, so
        that bad input (a net or solver refused while it is being set up) leaves the one error line alone."""
        if self._held is not None:  # nested: the outer block decides
            yield
            return
        self._held = []
        try:
            yield
        except BaseException:
            self._held = None
            raise
        lines, self._held = self._held, None
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write("".join(lines))
        stream.flush()


#: a logger that prints nothing (pycaffe's default, as pycaffe scripts set GLOG_minloglevel to silence Caffe)
def silent() -> CaffeLog:
    return CaffeLog(quiet=True)
