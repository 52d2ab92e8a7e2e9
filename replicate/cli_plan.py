"""``python -m replicate plan``: a grid's units, FLOP and wall-time estimates before it runs (issue 11, item 1;
replicate/experiments/plan.py has the conventions).

    python -m replicate plan --preset paper [--data ROOT [--clinical FILE] [--boxes FILE] | --paper-cohort]
        [--device auto|cpu|cuda|none]
        [--bench-seconds 1] [--beyond-trained] [--json]

Without ``--data`` the cohort is the preset's synthetic one (what ``run`` would use); ``--paper-cohort`` takes the
paper's stated 270 patients and 44,660 training patches. ``--device none`` skips the microbenchmark (no estimate
for this machine, only the reference cards'). Only parses and prints.
"""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="paper", help="grid preset (quick, smoke, paper; default paper)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--data", metavar="ROOT", help="count patches from this cohort's Annotation_Boxes.xlsx")
    g.add_argument("--paper-cohort", action="store_true",
                   help="the paper's cohort size (270 patients, 44,660 training patches a patch size)")
    p.add_argument("--clinical", metavar="FILE", help="Clinical_and_Other_Features.xlsx when not found near ROOT")
    p.add_argument("--boxes", metavar="FILE", help="Annotation_Boxes.xlsx when not found near ROOT")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "none"),
                   help="where to microbenchmark each net's train step (none: skip; default auto)")
    p.add_argument("--bench-seconds", type=float, default=1.0, help="seconds per net for the microbenchmark")
    p.add_argument("--beyond-trained", action="store_true",
                   help="count the trained-net 'beyond' analyses (nested CV over learning rates, learning curves of "
                        "trained nets) as `run --beyond-trained` would; the paper preset counts them anyway")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def main(args: argparse.Namespace) -> int:
    from replicate.experiments.grid import get_preset
    from replicate.experiments.plan import cohort_size, headline, human_seconds, make_plan

    preset = get_preset(args.preset)
    cohort = cohort_size(preset, data=args.data, paper=args.paper_cohort, clinical=args.clinical, boxes=args.boxes)
    device = None
    if args.device != "none":
        from replicate.experiments.training import resolve_device

        device = resolve_device(args.device).type
        from replicate.experiments.grid import for_device

        preset = for_device(preset, device)   # the preset a run on that device uses (quick on CUDA: paper epochs)
    plan = make_plan(preset, cohort, device=device, bench_seconds=args.bench_seconds,
                     beyond_trained=True if args.beyond_trained else None)
    if args.json:
        print(json.dumps(plan, indent=1, sort_keys=True))
        return 0
    print(headline(plan))
    print("\n| approach | net | units | train FLOP | eval FLOP | features FLOP | SVM FLOP | this machine |")
    print("|---|---|---|---|---|---|---|---|")
    for a, v in plan["approaches"].items():
        for net, n in v["nets"].items():
            f = n["flop"]
            print(f"| {a} | {net} ({n['folder']}) | {n['units']} | " + " | ".join(
                f"{f[k]:.2e}" if k in f else "-" for k in ("train", "eval", "features", "svm"))
                + f" | {human_seconds(n['seconds_estimate']) if device else 'n/a'} |")
    print(f"\n{plan['convention']}")
    for line in svm_reading_lines(plan):
        print(line)
    return 0


def svm_reading_lines(plan: dict) -> list[str]:
    """The SVM's training unit this plan uses and why, and the SVM fits' CPU time under each reading, per kernel
    (``plan["svm_seconds_by_unit"]``, replicate.experiments.svm_cost); [] when the grid fits no SVM."""
    from replicate.experiments.plan import human_seconds
    from replicate.experiments.svm import DEFAULT_UNIT, DEFAULT_UNIT_WHY

    by_unit = plan.get("svm_seconds_by_unit") or {}
    if not by_unit:
        return []
    unit = plan["svm_unit"]
    why = f" (the default: {DEFAULT_UNIT_WHY})" if unit == DEFAULT_UNIT else " (not the default)"
    out = [f"\nSVM training unit: {unit}{why}.", "SVM fits on the CPU under each reading of the training unit "
           "(linear kernel with more rows than features: the interior-point solver, replicate.experiments."
           "svm_linear):", "", "| training unit | " + " | ".join(sorted(next(iter(by_unit.values())))) +
           " | all |", "|---" * (len(next(iter(by_unit.values()))) + 2) + "|"]
    for u, ks in by_unit.items():
        mark = " (this plan)" if u == unit else ""
        out.append(f"| {u}{mark} | " + " | ".join(human_seconds(ks[k]) for k in sorted(ks))
                   + f" | {human_seconds(sum(ks.values()))} |")
    return out


if __name__ == "__main__":
    import sys

    ap = argparse.ArgumentParser(prog="python -m replicate plan")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
