"""The project's error types for the `replicate` package.

Every error a user can cause (a bad cohort root, a malformed spreadsheet, an unreadable DICOM file, a bad
setting) is a :class:`ReplicateError`. The CLI (`python -m replicate ...`) prints it as one line on stderr and
exits with status 2, without a traceback (docs/ARCHITECTURE.md, "CLI dispatch").
"""

from __future__ import annotations


class ReplicateError(Exception):
    """Base class: a problem with the user's input or settings, reported as one line."""


class DicomReadError(ReplicateError):
    """A DICOM file could not be read or its pixel data is incomplete; the message names the file."""


class CohortError(ReplicateError):
    """A cohort root or one of its spreadsheets does not have the expected layout."""


class ConfigError(ReplicateError):
    """A setting has a value outside what the code supports; the message names the setting."""


class PatchStoreError(ReplicateError):
    """A patch store on disk is inconsistent with its configuration or incomplete."""
