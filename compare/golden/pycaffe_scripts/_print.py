"""Printing helper shared by the pycaffe scripts: one ``KEY v1 v2 ...`` line per quantity, floats as repr()."""
import numpy as np


def show(key, value):
    """Print ``key`` and the values of ``value`` (array, number, string or sequence of those), one line."""
    if isinstance(value, (str, bytes)):
        print(key, "s:" + str(value))
        return
    arr = np.asarray(value)
    if arr.dtype.kind in "USO":
        print(key, "s:" + " ".join(str(v) for v in arr.ravel()))
        return
    print(key, " ".join(repr(float(v)) for v in arr.astype(np.float64).ravel()))
