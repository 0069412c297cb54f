"""Active learning rounds (S-SSAL and baselines) on the runtime: train, [CPSP], score, select,
annotate, evaluate; resumable, never overwrites a finished round without --force.

    # one round of a baseline (round 0 starts from a random set of --initial_boxes boxes)
    python tools/al_round.py --cfg_file cfgs/sssal/second_synthetic.yaml --strategy entropy \\
        --round 0 --budget_boxes 150 --initial_boxes 300
    # three rounds in a row
    python tools/al_round.py --cfg_file ... --strategy crb --round 0 --rounds 3 --budget_boxes 150
    # the same on 2 processes / GPUs: DDP training, the pool scored in two halves
    torchrun --nproc_per_node 2 tools/al_round.py --launcher pytorch --cfg_file ... --strategy cal ...
    # the S-SSAL recipe: random initial set, training, CPSP, CAL, ..., retrain + final CPSP
    python tools/al_round.py --cfg_file cfgs/sssal/second_synthetic.yaml --recipe sssal \\
        --budget_boxes 150 --initial_boxes 300 --rounds 1

Artifacts: output/<cfg group>/<cfg name>/<extra_tag>/round_K/ (see docs/active_learning.md).
Re-running the same command resumes a killed run where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pcdet_ext.active.rounds import RECIPES, ALInputError, RoundOptions, run_active_learning  # noqa: E402
from pcdet_ext.config import ConfigError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cfg_file', required=True, help='detector config with an ACTIVE_LEARNING section (cfgs/sssal/)')
    p.add_argument('--strategy', default=None, help='random, entropy, mc_dropout, coreset, badge, crb, cal '
                   '(default: ACTIVE_LEARNING.STRATEGY)')
    p.add_argument('--recipe', choices=sorted(RECIPES), default=None,
                   help='sssal = --strategy cal --cpsp --final_round')
    p.add_argument('--round', dest='first_round', type=int, default=0, help='round to run (round 0 starts the pool)')
    p.add_argument('--rounds', type=int, default=1,
                   help='selection rounds to run from --round on (0 with --final_round: the final round only)')
    p.add_argument('--budget_boxes', type=int, default=None, help='boxes to label per round')
    p.add_argument('--initial_boxes', type=int, default=None, help='boxes of the random initial set (round 0)')
    p.add_argument('--initial_min_per_class', type=int, default=None,
                   help='round 0 draws on (at most --initial_boxes more) until every class has this many boxes; '
                        '0: off (default ACTIVE_LEARNING.INITIAL_MIN_PER_CLASS, 1)')
    p.add_argument('--cpsp', action='store_true', help='CPSP pseudo-scene training after the labelled training')
    p.add_argument('--final_round', action='store_true',
                   help='after the selection rounds, one more round that trains (+CPSP) and evaluates only')
    p.add_argument('--epochs', type=int, default=None, help='training epochs (default OPTIMIZATION.NUM_EPOCHS)')
    p.add_argument('--cpsp_epochs', type=int, default=None, help='CPSP epochs (default ACTIVE_LEARNING.CPSP.EPOCHS)')
    p.add_argument('--seed', type=int, default=0, help='initial selection, strategies and CPSP scenes')
    p.add_argument('--extra_tag', default='default')
    p.add_argument('--force', action='store_true', help='recompute a finished round (removes it and later rounds)')
    p.add_argument('--redo_cpsp', action='store_true',
                   help='redo the CPSP stages of round --round (after changing ACTIVE_LEARNING.CPSP or '
                        '--cpsp_epochs), keeping its labelled set and model A; removes its selection and '
                        'later rounds')
    p.add_argument('--workers', type=int, default=2, help='data-loader workers')
    p.add_argument('--batch_size', type=int, default=None)
    p.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                   help='pytorch: under torchrun, DDP training and the pool scoring split across the ranks '
                        '(rank 0 writes every artifact)')
    p.add_argument('--tcp_port', type=int, default=18888, help='port for the process group without torchrun\'s')
    p.add_argument('--output_root', default=None, help='folder holding output/ (default: the repo root)')
    p.add_argument('--pretrained_model', default=None, help='initial weights for every round\'s training')
    p.add_argument('--initial_from', default=None,
                   help='another run\'s folder (output/.../<extra_tag>): round 0 adopts its initial set and '
                        'trained model (same config, seed, initial boxes and epochs) instead of training again')
    p.add_argument('--set', dest='set_cfgs', default=[], nargs=argparse.REMAINDER,
                   help='extra config keys: --set A.B value ...')
    return p


def options_from_args(args) -> RoundOptions:
    d = {k: v for k, v in vars(args).items() if k != 'recipe'}
    if args.recipe:
        for k, v in RECIPES[args.recipe].items():
            if k == 'strategy' and args.strategy not in (None, v):
                raise ALInputError(f'--recipe {args.recipe} uses --strategy {v}, not {args.strategy}')
            d[k] = v
    return RoundOptions(**d)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_active_learning(options_from_args(args))
    except (ALInputError, ConfigError) as e:   # ConfigError: a bad --set key or a broken yaml
        print(f'al_round.py: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
