"""``python -m replicate run --preset smoke|paper [--data DIR] [--out RUN] [--device auto|cpu|cuda]
[--weights-dir D] [--beyond-trained]``: the paper's experiments end to end (Zhu et al. 2019, Tables 3-6, Figures 2-3).

This module only parses arguments and prints: the run itself is :func:`replicate.run` (replicate.experiments.
pipeline). Without ``--data`` the run writes a synthetic cohort into ``RUN/cohort`` and uses it. The run is
resumable: run the same command again after an interruption and finished folds, patch stores and features are
reused. Outputs: see replicate.experiments.report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["quick", "smoke", "paper"], default="quick",
                        help="quick (default): controls on a synthetic cohort, ~30 min on 2 cores; smoke: CI check; "
                             "paper: the full grid")
    parser.add_argument("--data", type=Path, default=None,
                        help="cohort root (Duke-Breast-Cancer-MRI layout); default: a synthetic cohort in RUN/cohort")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<preset>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="folder with bvlc_googlenet.caffemodel and VGG_ILSVRC_16_layers.caffemodel "
                             "(python -m models fetch-weights DIR); default: none, random init (flagged)")
    parser.add_argument("--scratch-nets", choices=["table2", "text"], default=None,
                        help="which reading of GoogleNet_R / VGG_R to train from scratch (docs/deviations.md); "
                             "default table2: the nets matching Table 2's MACC and parameters")
    parser.add_argument("--repeats", type=int, default=None, help="override the preset's number of CV repeats")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples for the 95%% CI")
    parser.add_argument("--seed", type=int, default=None, help="base seed (folds, init, dropout, crops)")
    parser.add_argument("--synth-effect", type=float, default=1.0,
                        help="effect size of the synthetic cohort when --data is not given")
    parser.add_argument("--clinical", type=Path, default=None,
                        help="Clinical_and_Other_Features.xlsx (default: found in --data or up to two parents)")
    parser.add_argument("--boxes", type=Path, default=None,
                        help="Annotation_Boxes.xlsx (default: found in --data or up to two parents)")
    parser.add_argument("--paper-sized", type=int, default=0, metavar="R",
                        help="also rerun the deep-feature cells on R stratified subsets of the paper's size")
    parser.add_argument("--paper-sized-n", type=int, nargs=2, default=(270, 90), metavar=("N", "N_LUMINAL_A"),
                        help="size of each --paper-sized subset (default 270 90)")
    parser.add_argument("--beyond-trained", action="store_true",
                        help="also run the trained-net 'Beyond the paper' analyses (nested CV over Figure 2's "
                             "learning rates, learning curves of trained nets; they retrain nets hundreds of times; "
                             "on by default only in the paper preset)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="where the grid's units run: local (this process) or ray (Ray tasks; needs "
                             "pip install 'radiogenomics-replica[ray]'; RUN on storage every node sees)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="join a running Ray cluster (e.g. auto, or HEAD_IP:6379); default: start a local one")
    parser.add_argument("--unit-threads", type=int, default=None, metavar="N",
                        help="torch threads per unit, the same in both executors (default: this machine's torch "
                             "threads); a Ray unit asks for N CPUs")


def config_from_args(args: argparse.Namespace):
    from replicate.experiments.pipeline import RunConfig

    return RunConfig(preset=args.preset, data=args.data, out=args.out, device=args.device,
                     weights_dir=args.weights_dir, scratch_nets=args.scratch_nets, repeats=args.repeats,
                     n_boot=args.n_boot, seed=args.seed, synth_effect=args.synth_effect,
                     progress=not args.no_progress, argv=list(sys.argv), executor=args.executor,
                     ray_address=args.ray_address, unit_threads=args.unit_threads,
                     clinical=args.clinical, boxes=args.boxes, paper_sized=args.paper_sized,
                     paper_sized_n=tuple(args.paper_sized_n), beyond_trained=args.beyond_trained)


def main(args: argparse.Namespace) -> int:
    from replicate.experiments.pipeline import run

    from replicate.experiments.summary import summary_text

    result = run(config_from_args(args))
    print(summary_text(result.run_dir))
    print(f"done in {result.seconds:.0f} s: {result.report}")
    return 0
