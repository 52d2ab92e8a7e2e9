"""Which project modules a function can run: a static, conservative walk of imports and calls (``ast``, no import
of the code walked beyond ``importlib.util.find_spec``).

Used by tests/test_unit_code.py to check that a unit's code identity (replicate.experiments.unit_code) lists every
module its unit functions reach. The walk errs towards reaching too much, never too little, within what can be
read from the source:

- a reached function reaches every project module it imports (anywhere in its body), the names it imports from
  them, the module-level functions and classes of its own module it names, and ``self.x`` / ``cls.x`` / ``C.x``
  methods of its class;
- a reached class reaches its body, its bases and all its methods; a reached module reaches its parents'
  ``__init__``, its top-level statements (decorators and default values included, function bodies not);
- an attribute ``obj.name`` on an object of unknown class reaches every method ``name`` of the classes of the
  modules reached so far (repeated until nothing new is reached).

Not followed: ``importlib.import_module`` / ``getattr`` by a computed string, and objects built by code outside the
walk (the caller passes such code's modules as roots or lists them by hand).
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

#: Top-level packages the walk follows (imports of anything else, e.g. numpy, are ignored).
PROJECT = ("replicate", "models")


def is_source_module(name: str) -> bool:
    """True when ``name`` is an importable module with a ``.py`` source file."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and spec.origin.endswith(".py")


class _Module:
    """One parsed module: its definitions by qualified name, its classes' methods, its import-time statements."""

    def __init__(self, name: str):
        path = Path(importlib.util.find_spec(name).origin)
        self.name = name
        self.package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        self.defs: dict[str, ast.AST] = {}
        self.methods: dict[str, list[str]] = {}
        self.top: list[ast.AST] = []
        self._collect(ast.parse(path.read_text(encoding="utf-8")).body, "")

    def _collect(self, body, prefix: str) -> None:
        for n in body:
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.top.append(n)
                continue
            q = prefix + n.name
            self.defs[q] = n
            self.top.extend(n.decorator_list)
            if isinstance(n, ast.ClassDef):
                self.methods[q] = []
                self._collect(n.body, q + ".")
            else:
                self.top.extend(n.args.defaults + [d for d in n.args.kw_defaults if d is not None])
                if prefix[:-1] in self.methods:
                    self.methods[prefix[:-1]].append(q)


_PARSED: dict[str, _Module] = {}


def _module(name: str) -> _Module:
    if name not in _PARSED:
        _PARSED[name] = _Module(name)
    return _PARSED[name]


def _nodes(roots, into_functions: bool):
    todo = list(roots)
    while todo:
        n = todo.pop()
        yield n
        for ch in ast.iter_child_nodes(n):
            if into_functions or not isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                todo.append(ch)


def _imported(m: _Module, node) -> list[tuple[str, str]]:
    """(module, name) targets of one import statement ("" = the module itself)."""
    if isinstance(node, ast.Import):
        return [(a.name, "") for a in node.names if a.name.split(".")[0] in PROJECT]
    base = node.module or ""
    if node.level:
        parts = m.package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
    if base.split(".")[0] not in PROJECT:
        return []
    out = [(base, "")]
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.append((sub, "") if is_source_module(sub) else (base, a.name))
    return out


def _edges(m: _Module, nodes, cls: str | None, into_functions: bool):
    out, attrs = set(), set()
    for n in _nodes(nodes, into_functions):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update(_imported(m, n))
        elif isinstance(n, ast.Name) and n.id in m.defs:
            out.add((m.name, n.id))
        elif isinstance(n, ast.Attribute):
            attrs.add(n.attr)
            if isinstance(n.value, ast.Name):
                if n.value.id in ("self", "cls") and cls:
                    out.add((m.name, f"{cls}.{n.attr}"))
                elif n.value.id in m.methods:
                    out.add((m.name, f"{n.value.id}.{n.attr}"))
    return out, attrs


def reached(roots) -> set[tuple[str, str]]:
    """Every ``(module, qualified name)`` the functions ``roots`` can run (``""`` = a module's import-time code).

    Parameters
    ----------
    roots : iterable of callables or ``(module, qualname)`` pairs
        Functions, methods or classes of ``replicate`` / ``models`` modules.
    """
    todo = [(r.__module__, r.__qualname__) if callable(r) else tuple(r) for r in roots]
    seen: set[tuple[str, str]] = set()
    attrs: set[str] = set()
    while todo:
        while todo:
            mname, q = todo.pop()
            if (mname, q) in seen or not is_source_module(mname):
                continue
            m = _module(mname)
            if q and q not in m.defs:       # a name the module re-exports: its import-time code covers it
                q = ""
                if (mname, q) in seen:
                    continue
            seen.add((mname, q))
            if not q:
                parts = mname.split(".")
                todo += [(".".join(parts[:i]), "") for i in range(1, len(parts))]
                out, a = _edges(m, m.top, None, into_functions=False)
            else:
                todo.append((mname, ""))
                d = m.defs[q]
                if q in m.methods:
                    out, a = _edges(m, d.body, q, into_functions=False)
                    out |= {(mname, mq) for mq in m.methods[q]}
                    out |= {(mname, b.id) for b in d.bases if isinstance(b, ast.Name) and b.id in m.defs}
                else:
                    owner = q.rpartition(".")[0]
                    out, a = _edges(m, d.body + d.decorator_list, owner if owner in m.methods else None, True)
            attrs |= a
            todo += [t for t in out if t not in seen]
        for mname in sorted({mm for mm, _ in seen}):
            m = _module(mname)
            todo += [(mname, mq) for meths in m.methods.values() for mq in meths
                     if mq.rpartition(".")[2] in attrs and (mname, mq) not in seen]
    return seen


def reached_modules(roots) -> set[str]:
    """The modules of :func:`reached` (``roots`` as there)."""
    return {m for m, _ in reached(roots)}
