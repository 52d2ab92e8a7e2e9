"""Reading and writing Caffe text-format files (prototxt) with protobuf's ``text_format``.

A syntax error becomes :class:`~models.errors.PrototxtSyntaxError` carrying ``FILE:LINE:COL``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from google.protobuf import message as pb_message
from google.protobuf import text_format

from .errors import PrototxtSyntaxError
from .schema import pb


def _looks_like_text(source: str) -> bool:
    return "\n" in source or "{" in source or ":" in source and not os.path.exists(source)


def read_text(source, message_cls, what: str = "prototxt"):
    """Parse a text-format file (path) or text (``str`` containing a newline or brace) into ``message_cls``."""
    if isinstance(source, Path) or not _looks_like_text(str(source)):
        path = str(source)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PrototxtSyntaxError(path, None, None, f"no such {what} file") from None
        except UnicodeDecodeError as e:
            raise PrototxtSyntaxError(path, None, None,
                                      f"not a text file (byte {e.start} is not UTF-8): is it a binary .caffemodel?") \
                from None
    else:
        path, text = "<string>", str(source)
    if message_cls is pb.NetParameter:
        text = translate_fork_spellings(text, path)
    msg = message_cls()
    try:
        text_format.Parse(text, msg, allow_unknown_field=False)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        detail = str(e)
        detail = re.sub(r"^\d+:\d+\s*:\s*", "", detail)
        raise PrototxtSyntaxError(path, line, col, detail) from None
    except (ValueError, pb_message.DecodeError) as e:  # e.g. an out-of-range value
        raise PrototxtSyntaxError(path, None, None, str(e)) from None
    return msg


#: Spellings of widely used Caffe forks that differ from upstream BVLC in a known, documented way:
#: (regex, replacement, what the warning says). brocolli-caffe / SSD-style forks declare PoolingParameter field 13
#: as ``bool ceil_mode`` (default true) where upstream has ``enum RoundMode round_mode`` (CEIL = 0, FLOOR = 1);
#: the pooling code behind both is the same (compare/golden/README.md).
FORK_SPELLINGS = (
    (re.compile(r"\bceil_mode\s*:\s*(true|false|True|False|1|0)\b"),
     lambda m: "round_mode: " + ("CEIL" if m.group(1) in ("true", "True", "1") else "FLOOR"),
     "pooling_param ceil_mode: {0} (a fork's spelling of field 13) read as upstream round_mode: {1}"),
)


def translate_fork_spellings(text: str, path: str = "<string>") -> str:
    """Rewrite the fork spellings in :data:`FORK_SPELLINGS` to upstream syntax, with one warning per kind
    (``UserWarning``) naming the file, line and translation. Anything else unknown stays a parse error."""
    import warnings
    for pattern, repl, what in FORK_SPELLINGS:
        hits = list(pattern.finditer(text))
        if not hits:
            continue
        first = hits[0]
        line = text.count("\n", 0, first.start()) + 1
        new = repl(first)
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        warnings.warn(f"{path}:{line}: " + what.format(first.group(1), new.split(": ")[1]) + more, stacklevel=3)
        text = pattern.sub(repl, text)
    return text


def read_net_text(source) -> "pb.NetParameter":
    """Parse a net prototxt (path or text)."""
    return read_text(source, pb.NetParameter, "prototxt")


def read_solver_text(source) -> "pb.SolverParameter":
    """Parse a solver prototxt (path or text)."""
    return read_text(source, pb.SolverParameter, "solver prototxt")


def write_text(path, msg) -> None:
    """Write a message as Caffe text format, atomically."""
    path = Path(path)
    text = text_format.MessageToString(msg)
    from models.atomic import write_text as _write

    _write(path, text)
