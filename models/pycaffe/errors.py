"""pycaffe's error cases as the project's error types (:mod:`models.errors`), each also an instance of the Python
exception real pycaffe raises there, so that a script's ``except`` clauses keep working."""
from __future__ import annotations

from models.errors import InputError


class PycaffeError(InputError):
    """A call pycaffe refuses (python/caffe/pycaffe.py raises a bare ``Exception`` there): inputs that do not match
    the net's inputs, arrays that are not batch sized, a layer name the net lacks."""


class MissingFileError(InputError, RuntimeError):
    """A net, weights or solver file that cannot be opened (_caffe.cpp ``CheckFile``: ``RuntimeError("Could not
    open file NAME")``)."""


class ArgumentError(InputError, TypeError):
    """Arguments of a type or value the call cannot take (Boost.Python's ``ArgumentError``, a ``TypeError``)."""
