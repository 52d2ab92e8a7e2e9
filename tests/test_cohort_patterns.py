"""replicate.cohort.series_patterns: every SeriesDescription listed in shared/notes/duke-dataset.md gets its phase."""

from __future__ import annotations

import pytest

from replicate.errors import ConfigError
from replicate.cohort.series_patterns import PatternTable

SEEN = {
    "pre": ["ax dyn pre", "ax 3d dyn pre", "ax 3d pre", "ax dyn", "ax 3d dyn", "ax 3d dyn MP",
            "Ax Vibrant MultiPhase", "ax dynamic", "t1_fl3d_tra_dynVIEWS_spair_ pre"],
    "post1": ["Ph1/ax dyn", "Ph1/Ax Vibrant MultiPhase", "ax dyn 1st pass", "ax dyn 1st pas", "ax 3d dyn 1st pass",
              "1st ax dyn", "t1_fl3d_tra_dynVIEWS_spair 1st pass", "t1_fl3d_tra_dynVIEWS_spair_1st_pass",
              "Ph1ax 3d dyn"],
    "post2": ["Ph2/Ax Vibrant MultiPhase", "ax dyn 2nd pass", "t1_fl3d_tra_dynVIEWS_spair_2nd pass"],
    "post3": ["3rd pass", "Ph3/ax 3d dyn MP", "ax 3d dyn 3rd pas"],
    "post4": ["4th pass", "Ph4/ax dyn"],
    "t1": ["ax t1", "ax t1 tse", "ax t1 3mm", "ax 3d t1 bilateral", "Ax 3D T1 NON FS"],
    None: ["ax t2 fse", "3 plane loc", "", None],
}


@pytest.mark.parametrize("phase,desc", [(p, d) for p, ds in SEEN.items() for d in ds])
def test_seen_descriptions(phase, desc):
    assert PatternTable.default().classify(desc) == phase


def test_user_rules_come_first(tmp_path):
    f = tmp_path / "rules.csv"
    f.write_text("pattern,phase\n^dce pre$,pre\n^dce p(?P<k>[1-4])$,post{k}\n^ax dyn$,ignore\n")
    t = PatternTable.from_csv(f)
    assert t.classify("DCE pre") == "pre"
    assert t.classify("dce p3") == "post3"
    assert t.classify("ax dyn") == "ignore"          # overrides the built-in 'pre'
    assert t.classify("ax dyn 1st pass") == "post1"  # built-ins still apply


def test_bad_rule_names_file_and_line(tmp_path):
    f = tmp_path / "rules.csv"
    f.write_text("pattern,phase\n^x$,pre\n^y$,postcontrast\n")
    with pytest.raises(ConfigError, match=r"rules.csv:3: phase 'postcontrast'"):
        PatternTable.from_csv(f)
    f.write_text("pattern,phase\n([,pre\n")
    with pytest.raises(ConfigError, match=r"rules.csv:2: bad regular expression"):
        PatternTable.from_csv(f)
