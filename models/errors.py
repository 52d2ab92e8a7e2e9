"""The error types of `models`.

Every error the package raises on bad input is a :class:`CaffeError`, so callers (and the CLI, which prints
one line and exits 2) can tell bad input from a bug.
"""
from __future__ import annotations


class CaffeError(Exception):
    """Base class: bad input (a prototxt, a caffemodel, weights, an array) rather than a bug."""


class PrototxtSyntaxError(CaffeError):
    """A prototxt that protobuf's text format rejects; carries ``FILE:LINE:COL``."""

    def __init__(self, path: str, line: int | None, column: int | None, message: str):
        self.path, self.line, self.column, self.message = path, line, column, message
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class NetDefinitionError(CaffeError):
    """A net that parses but is not a valid Caffe net (missing bottom, bad include rule, ...)."""


_RECURRENT = ("a Recurrent layer unrolls an internal net over the T time steps of a (T, N, ...) bottom gated by a "
              "sequence-continuation bottom (recurrent_layer.cpp, {}); that unrolled net is not built here")
#: BVLC types deliberately not converted, and why (said in the refusal, after the layer's name)
NOT_CONVERTED = {
    "RNN": _RECURRENT.format("rnn_layer.cpp"),
    "LSTM": _RECURRENT.format("lstm_layer.cpp"),
    "HDF5Output": "it computes nothing: it writes its bottoms to an HDF5 file as a side effect and has no tops "
                  "(hdf5_output_layer.cpp); remove it and save the blobs from the converted net's outputs",
}


class UnknownLayerError(NetDefinitionError):
    """Layer types this project does not implement: one error naming every such layer of the net.

    ``UnknownLayerError(layer, type, supported)`` for one layer, or ``UnknownLayerError([(layer, type), ...],
    None, supported)`` for several."""

    def __init__(self, layer, type_, supported):
        pairs = list(layer) if isinstance(layer, (list, tuple)) else [(layer, type_)]
        self.layers = pairs
        self.layer, self.type = pairs[0]
        named = ", ".join(f"layer '{n}' has type '{t}'" + (f" (not converted: {NOT_CONVERTED[t]})"
                                                           if t in NOT_CONVERTED else "") for n, t in pairs)
        head = f"{named}, which is not supported" if len(pairs) == 1 else \
            f"{len(pairs)} layers have types that are not supported: {named}"
        super().__init__(f"{head} (add a type with models.register_layer or an installed layer plugin, see "
                         "docs/plugins.md); supported types: " + ", ".join(sorted(supported)))


class ShapeError(NetDefinitionError):
    """Shape inference failed; names the layer, its bottoms and their shapes."""


class CaffemodelFormatError(CaffeError):
    """A binary file that is not a (complete) Caffe NetParameter."""


class WeightsError(CaffeError):
    """Weights that do not fit the net: names the layer, blob index and both shapes."""


class InputError(CaffeError):
    """An input array of the wrong shape or dtype."""
