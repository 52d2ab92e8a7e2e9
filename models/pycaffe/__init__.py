"""Placeholder for the pycaffe drop-in: it only exposes ``caffe.io``; the full ``models.pycaffe`` (Net, solvers,
modes) replaces this file."""
try:
    from . import io  # noqa: F401
except ImportError:  # pragma: no cover - numpy-only environments still import the package
    pass
