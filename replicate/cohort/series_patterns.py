"""Which DCE phase a DICOM series is, from its SeriesDescription: an ordered, user-extendable pattern table.

The Duke-Breast-Cancer-MRI collection names its series by scanner and year (shared/notes/duke-dataset.md,
"Series are identified by DICOM SeriesDescription"): the pre-contrast fat-saturated T1 series is e.g.
``ax dyn pre``, ``ax 3d dyn``, ``Ax Vibrant MultiPhase`` or ``t1_fl3d_tra_dynVIEWS_spair_ pre``; post-contrast
phase k is ``Ph<k>/`` + a pre name, ``ax dyn 1st pass`` (also the typo ``1st pas``), ``1st ax dyn`` or
``t1_fl3d_tra_dynVIEWS_spair 1st pass``. The paper (Zhu et al. 2019, "MR Imaging Pre-processing") uses the
pre-contrast series and the first three post-contrast series.

A :class:`PatternTable` is an ordered list of ``(regex, phase)`` rules; the first rule whose regex matches the
normalised description decides. Descriptions are normalised by lower-casing, turning ``_`` into spaces and
collapsing white space, so ``t1_fl3d_tra_dynVIEWS_spair_ pre`` is matched as ``t1 fl3d tra dynviews spair pre``.
Users add rules in front of the built-in ones (``PatternTable.default().extended(...)`` or a CSV file with
columns ``pattern,phase`` given to ``python -m replicate cohort --patterns FILE``).

Phases: ``pre``, ``post1`` .. ``post4``, ``t1`` (non-fat-saturated T1, not used) and ``ignore``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from replicate.errors import ConfigError

PHASES = ("pre", "post1", "post2", "post3", "post4", "t1", "ignore")
DCE_PHASES = ("pre", "post1", "post2", "post3")  # the phases the paper uses

_ORDINAL = r"(?P<k>[1-4])(?:st|nd|rd|th)"

#: Built-in rules, first match wins. ``{k}`` in a phase means "post" + the captured group ``k``.
DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    (r"^ph(?P<k>[1-4])\s*/?\s*\S", "post{k}"),          # Ph1/ax dyn, Ph2/Ax Vibrant MultiPhase, Ph1ax 3d dyn
    (r"\b" + _ORDINAL + r"\s+pas+\b", "post{k}"),       # ax dyn 1st pass, 1st pas, 3rd pass, spair 2nd pass
    (r"^" + _ORDINAL + r"\s+ax\b", "post{k}"),          # 1st ax dyn
    (r"\bdynviews\b.*\bpre\b", "pre"),                   # t1_fl3d_tra_dynVIEWS_spair_ pre
    (r"^ax\s+(?:3d\s+)?dyn(?:amic)?(?:\s+pre|\s+mp)?$", "pre"),  # ax dyn, ax dyn pre, ax 3d dyn (MP), ax dynamic
    (r"^ax\s+3d\s+pre$", "pre"),
    (r"^ax\s+vibrant\s+multiphase$", "pre"),
    (r"\bnon\s*fs\b", "t1"),                              # Ax 3D T1 NON FS
    (r"^ax\s+(?:3d\s+)?t1\b", "t1"),                      # ax t1, ax t1 tse, ax t1 3mm, ax 3d t1 bilateral
)


def normalise(description: str) -> str:
    """Lower-case, ``_`` -> space, collapse white space (the form the rules are written against)."""
    return " ".join(str(description).replace("_", " ").lower().split())


@dataclass(frozen=True)
class Rule:
    pattern: str
    phase: str
    regex: re.Pattern

    def match(self, normalised: str) -> str | None:
        m = self.regex.search(normalised)
        if m is None:
            return None
        if "{k}" in self.phase:
            k = m.groupdict().get("k")
            if k is None:
                raise ConfigError(f"series pattern {self.pattern!r}: phase {self.phase!r} needs a group (?P<k>...)")
            return self.phase.format(k=k)
        return self.phase


def _compile(pattern: str, phase: str, where: str) -> Rule:
    check = phase.format(k="1") if "{k}" in phase else phase
    if check not in PHASES:
        raise ConfigError(f"{where}: phase {phase!r} is not one of {', '.join(PHASES)} (or 'post{{k}}')")
    try:
        return Rule(pattern, phase, re.compile(pattern))
    except re.error as e:
        raise ConfigError(f"{where}: bad regular expression {pattern!r}: {e}") from None


class PatternTable:
    """Ordered SeriesDescription -> phase rules; first match wins."""

    def __init__(self, rules: list[tuple[str, str]] | tuple[tuple[str, str], ...]):
        self.rules = [_compile(p, ph, f"series pattern {i + 1}") for i, (p, ph) in enumerate(rules)]

    @classmethod
    def default(cls) -> "PatternTable":
        return cls(DEFAULT_RULES)

    def extended(self, rules: list[tuple[str, str]]) -> "PatternTable":
        """A new table with ``rules`` tried before this table's rules."""
        return PatternTable(list(rules) + [(r.pattern, r.phase) for r in self.rules])

    @classmethod
    def from_csv(cls, path: str | Path, base: "PatternTable | None" = None) -> "PatternTable":
        """Read user rules (columns ``pattern,phase``; regexes match the normalised description) and put them
        in front of ``base`` (default: the built-in table)."""
        path = Path(path)
        base = base or cls.default()
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"pattern", "phase"} <= set(reader.fieldnames):
                    raise ConfigError(f"{path}:1: expected a header with columns 'pattern,phase'")
                rows = []
                for line, row in enumerate(reader, start=2):
                    rule = _compile(row["pattern"], row["phase"].strip(), f"{path}:{line}")
                    rows.append((rule.pattern, rule.phase))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read series pattern file: {e.strerror}") from None
        return base.extended(rows)

    def classify(self, description: str | None) -> str | None:
        """The phase of a series description, or None when no rule matches (T2, localisers, ...)."""
        if not description:
            return None
        text = normalise(description)
        for rule in self.rules:
            phase = rule.match(text)
            if phase is not None:
                return phase
        return None
