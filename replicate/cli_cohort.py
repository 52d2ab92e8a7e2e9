"""The cohort subcommands of ``python -m replicate``: ``synth``, ``cohort`` and ``patches``.

The dispatcher (replicate/cli.py) uses :data:`SUBCOMMANDS`: name -> (add_arguments, main, help). Each ``main``
returns the exit status; :class:`replicate.errors.ReplicateError` is left to the dispatcher (one line, exit 2).
``python -m replicate.cli_cohort <subcommand> ...`` works on its own too.

* ``synth --out DIR [--patients N] [--seed S] [--effect E] [--fault KIND[:N|:Breast_MRI_XXX]] ...``: write a
  synthetic cohort in the Duke layout (replicate/synth.py).
* ``cohort ROOT [--out DIR] [--clinical FILE] [--boxes FILE]``: scan a cohort, print the exclusion flow (Zhu et al.
  2019, "Patient Population"), the per-scanner table (Table 1) and our luminal A label against the spreadsheet's
  ``Mol Subtype`` (prevalence, HER2-borderline count), write them as CSV plus one row a patient. ROOT holds the
  ``Breast_MRI_XXX`` folders or ``Duke-Breast-Cancer-MRI/``; the spreadsheets are found in ROOT or up to two
  folders above it (replicate.cohort.duke.locate_inputs).
* ``patches ROOT --cache DIR [--size 80]``: build (or reuse, or resume) the patch store for one configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replicate.errors import ReplicateError


# ---------------------------------------------------------------------------------------------------- synth

def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    from replicate.cohort.synth import FAULT_KINDS, SynthConfig
    d = SynthConfig()
    p.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    p.add_argument("--patients", type=int, default=d.patients, help=f"number of patients (default {d.patients})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--effect", type=float, default=d.effect,
                   help=f"label signal in the enhancement kinetics, d' of the slope (0 = none; default {d.effect})")
    p.add_argument("--layout", choices=("classic", "descriptive"), default=d.layout, help="folder naming")
    p.add_argument("--lesion-slices", type=int, nargs=2, metavar=("MIN", "MAX"), default=list(d.lesion_slices),
                   help=f"slices a lesion spans (default {d.lesion_slices[0]} {d.lesion_slices[1]})")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:N|:ID]",
                   help=f"plant a fault in N (default 1) or the named patient(s); kinds: {', '.join(FAULT_KINDS)}")
    p.add_argument("--no-compress", action="store_true", help="plain Explicit VR Little Endian instead of deflated")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--workers", type=int, default=d.workers, help="processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def synth_main(args: argparse.Namespace) -> int:
    from replicate.cohort.synth import SynthConfig, generate, resolve_faults
    cfg = SynthConfig(patients=args.patients, seed=args.seed, effect=args.effect, layout=args.layout,
                      lesion_slices=tuple(args.lesion_slices), compress=not args.no_compress,
                      faults=resolve_faults(args.fault, args.patients, args.seed), workers=args.workers)
    truth = generate(args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    n_lum = int(truth.label.sum())
    print(f"wrote {len(truth)} patients to {args.out} (luminal A {n_lum}, other {len(truth) - n_lum}; "
          f"effect {cfg.effect:g}, seed {cfg.seed})")
    for kind, pid in cfg.faults:
        print(f"  fault {kind}: {pid}")
    return 0


# ---------------------------------------------------------------------------------------------------- cohort

def _add_loader_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--her2-borderline", choices=("negative", "positive", "exclude"), default="negative",
                   help="how HER2 borderline (code 2) counts for the luminal A label (default negative)")
    p.add_argument("--box-base", type=int, choices=(0, 1), default=1,
                   help="index base of Annotation_Boxes.xlsx (default 1)")
    p.add_argument("--box-end-exclusive", action="store_true",
                   help="box ends are exclusive (default: inclusive)")
    p.add_argument("--patterns", metavar="CSV", help="extra SeriesDescription rules (columns pattern,phase), "
                                                     "tried before the built-in table")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_cohort_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="folder holding the Breast_MRI_XXX folders, or the folder holding "
                                "Duke-Breast-Cancer-MRI/; the two xlsx files are looked up there and up to two "
                                "folders above")
    p.add_argument("--clinical", metavar="FILE", help="Clinical_and_Other_Features.xlsx (default: found near ROOT)")
    p.add_argument("--boxes", metavar="FILE", help="Annotation_Boxes.xlsx (default: found near ROOT)")
    p.add_argument("--out", help="folder for cohort_flow.csv, cohort_table1.csv, cohort_subtypes.csv, "
                                 "cohort_patients.csv and cohort_flow_beside_paper.csv (default ./cohort-<root name>)")
    _add_loader_arguments(p)


def _settings(args):
    from replicate.cohort.duke import CohortSettings
    from replicate.cohort.series_patterns import PatternTable
    patterns = PatternTable.from_csv(args.patterns) if args.patterns else PatternTable.default()
    return CohortSettings(box_index_base=args.box_base, box_end_inclusive=not args.box_end_exclusive,
                          her2_borderline=args.her2_borderline, patterns=patterns, workers=args.workers)


def format_flow(flow) -> str:
    lines = []
    for r in flow.itertuples(index=False):
        if r.step == "found":
            lines.append(f"  {r.reason:<52}{r.count:>6}")
        elif r.step == "excluded":
            lines.append(f"    - {r.reason:<48}{r.count:>6}")
        else:
            lines.append(f"  = {r.reason:<50}{r.count:>6}")
    return "\n".join(lines)


def format_labels(summary: dict) -> str:
    """Prevalence of our luminal A label and its agreement with ``Mol Subtype`` (Cohort.label_summary)."""
    lines = [f"Luminal A label: {summary['rule']}"]
    for pop, what in (("labelled", "with a label"), ("included", "included")):
        d = summary[pop]
        prev = f"{d['prevalence']:.3f}" if d["n"] else "n/a"
        lines.append(f"  {what:<13} {d['luminal_a']:>5} luminal A of {d['n']:<5} (prevalence {prev}); Mol Subtype "
                     f"known for {d['mol_subtype_known']}: ours luminal A but not luminal-like "
                     f"{d['ours_a_not_luminal_like']}, luminal-like but not ours {d['luminal_like_not_ours_a']}")
    b = summary["her2_borderline"]
    lines.append(f"  HER2 borderline with ER/PR positive: {b['borderline_hr_positive']} patient(s), "
                 f"{b['included_affected']} of them included; setting '{b['setting']}' (negative = luminal A, "
                 f"positive = other, exclude = excluded): {b['borderline_hr_positive']} label(s) change between "
                 f"'negative' and 'positive'")
    lines.append("Our label (rows) against Mol Subtype (columns), patients with a label:")
    return "\n".join(lines)


def cohort_main(args: argparse.Namespace) -> int:
    from replicate.cohort.duke import scan_cohort
    cohort = scan_cohort(args.root, _settings(args), progress=not args.quiet, clinical=args.clinical,
                         boxes=args.boxes)
    return report_cohort(cohort, Path(args.out) if args.out else Path.cwd() / f"cohort-{Path(args.root).name}")


def flow_beside(flow):
    """Our flow next to the paper's (replicate.cohort.flow.flow_beside_paper; the paper's steps from compare/),
    or None when compare/ is not importable."""
    try:
        from replicate.experiments.report import paper_flow_steps
    except ImportError:
        return None
    from replicate.cohort.flow import flow_beside_paper

    return flow_beside_paper(flow, paper_flow_steps())


def report_cohort(cohort, out: Path) -> int:
    """Print the flow and Table 1, write them (and the per-patient table) as CSV under ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    flow = cohort.flow()
    table1 = cohort.scanner_table()
    patients = cohort.table
    inc = patients[patients.status == "included"]
    n_lum = int((inc.label == 1).sum())
    print(f"Cohort flow: {cohort.root}")
    print(f"  spreadsheets: {cohort.clinical_path}, {cohort.boxes_path}")
    print(format_flow(flow))
    print(f"  included: luminal A {n_lum}, other {len(inc) - n_lum}")
    beside = flow_beside(flow)
    if beside is not None:
        print("\nOur flow beside the paper's (compare/data/cohort_flow.csv; reproducible = can be redone from the "
              "public data)")
        with pd.option_context("display.width", 220, "display.max_columns", 20, "display.max_colwidth", 60):
            print(beside.to_string(index=False))
    if len(inc):
        print(f"  target in-plane spacing (most frequent): {cohort.target_spacing():.4f} mm")
    print()
    print(format_labels(cohort.label_summary()))
    crosstab = cohort.subtype_crosstab("labelled")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(crosstab.to_string())
    print()
    print("Table 1 (included patients by scanner)")
    if table1.empty:
        print("  (no included patients)")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table1.to_string(index=False))
    subtypes = crosstab.reset_index()
    names = ("cohort_flow.csv", "cohort_table1.csv", "cohort_subtypes.csv", "cohort_patients.csv")
    frames = [flow, table1, subtypes, patients]
    if beside is not None:
        names += ("cohort_flow_beside_paper.csv",)
        frames.append(beside)
    for name, df in zip(names, frames):
        tmp = out / f".{name}.tmp"
        df.to_csv(tmp, index=False, lineterminator="\n")
        tmp.replace(out / name)
    print(f"\nwrote {', '.join(str(out / n) for n in names)}")
    return 0


# ---------------------------------------------------------------------------------------------------- patches

def add_patches_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="cohort root")
    p.add_argument("--cache", required=True, help="folder holding patch stores")
    p.add_argument("--size", type=int, default=80, help="patch size in pixels of the resampled grid (default 80)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    p.add_argument("--target-spacing", type=float, help="mm (default: the cohort's most frequent spacing)")
    _add_loader_arguments(p)


def patches_main(args: argparse.Namespace) -> int:
    from replicate.cohort.patches import PatchConfig, PatchStore
    cfg = PatchConfig(patch_size=args.size, seed=args.seed, target_spacing=args.target_spacing,
                      box_index_base=args.box_base, box_end_inclusive=not args.box_end_exclusive,
                      patterns_csv=args.patterns, her2_borderline=args.her2_borderline, workers=args.workers)
    store = PatchStore.build(args.root, cfg, args.cache, progress=not args.quiet)
    roles = store.index.role.value_counts()
    print(f"patch store {store.key}: {store.path}")
    print(f"  {len(store.index)} patches of {cfg.patch_size}x{cfg.patch_size} (train {roles.get('train', 0)}, "
          f"test {roles.get('test', 0)}) from {len(store.patients)} patients; target spacing "
          f"{float(store.patients.target_spacing_mm.iloc[0]):.4f} mm")
    return 0


SUBCOMMANDS = {
    "synth": (add_synth_arguments, synth_main, "write a synthetic Duke-layout cohort"),
    "cohort": (add_cohort_arguments, cohort_main, "scan a cohort: exclusion flow and Table 1"),
    "patches": (add_patches_arguments, patches_main, "build the patch store for one configuration"),
}


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replicate.cli_cohort")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add, _main, help_) in SUBCOMMANDS.items():
        add(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except ReplicateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
