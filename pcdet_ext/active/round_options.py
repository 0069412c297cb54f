"""Options of the active-learning driver: the command-line options (RoundOptions), the config's
ACTIVE_LEARNING section (every key listed here with its default; an unknown key is an error) and
the recipes (`--recipe sssal`)."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import List, Optional

from ..config import register_informational_key, to_plain

# The ACTIVE_LEARNING section is read (and checked) by this driver, not by the training tool.
register_informational_key('ACTIVE_LEARNING')

# INITIAL_MIN_PER_CLASS: round 0's random draw goes on past INITIAL_BOXES (by at most INITIAL_BOXES
# again) until every class has this many labelled boxes; 0 turns it off (ActivePool.initial_selection)
AL_DEFAULTS = {'INITIAL_BOXES': None, 'INITIAL_MIN_PER_CLASS': 1, 'BUDGET_BOXES': None, 'STRATEGY': None,
               'STRATEGY_OPTIONS': {}, 'MC_PASSES': 5, 'MC_DROPOUT_P': 0.2, 'SCORE_BATCH_SIZE': 4,
               'POOL_SPLIT': None, 'CPSP': {}, 'MIN_TRAIN_ITERS': 0}
# REFRESH_INTERVAL 0: refreshing the bank with the model in CPSP training degraded it in every
# benchmark run (docs/benchmarks_al.md); the refresh stays available, opt-in
# GENERATIONS: CPSP trainings in sequence; generation g > 1 takes its pseudo bank from the finished
# model of generation g - 1 (a stronger teacher than model A, and not the model in training, which is
# what failed as a refresh teacher) and trains from model A again, on the same schedule.
CPSP_DEFAULTS = {'EPOCHS': None, 'REFRESH_INTERVAL': 0, 'GENERATIONS': 1, 'LOW_THRESH': 0.1, 'MIN_HIGH_THRESH': 0.5,
                 'MAX_CANDIDATES': 64, 'NUM_SCENES': None,
                 'OBJECTS_PER_SCENE': None, 'NEGATIVES_PER_SCENE': 5, 'LABELLED_FRAME_SHARE': 0.2,
                 'GROUND_ALIGN': True, 'OBJECT_ROTATION': 0.0, 'BACKGROUND_THRESH': None,
                 'BACKGROUND_MARGIN': 0.2, 'NEGATIVE_MAX_THRESH': None}
# MIN_HIGH_THRESH: a number, or a list with one floor per generation (the last one goes on), for a
# later, stronger teacher (on the synthetic benchmark [0.5, 0.4] did not beat 0.5: docs/benchmarks_al.md)
# BACKGROUND_THRESH: candidates from this score up are cut out of the pseudo backgrounds (None:
# LOW_THRESH); below the model's POST_PROCESSING.SCORE_THRESH the teacher scores the pool at it.
# NEGATIVE_MAX_THRESH: hard negatives score below min(2-means boundary, this) (None: the boundary);
# the candidates above it and under the object threshold are cut out of the backgrounds only.
RECIPES = {'sssal': {'strategy': 'cal', 'cpsp': True, 'final_round': True}}


def generation_floor(min_high_thresh, gen: int) -> float:
    """CPSP generation `gen`'s pseudo-object floor from MIN_HIGH_THRESH (a number, or one per
    generation with the last repeated)."""
    if isinstance(min_high_thresh, (list, tuple)):
        return float(min_high_thresh[min(gen, len(min_high_thresh)) - 1])
    return float(min_high_thresh)


def check_floor(min_high_thresh) -> None:
    """MIN_HIGH_THRESH must be a number in [0, 1] or a non-empty list of them."""
    items = min_high_thresh if isinstance(min_high_thresh, (list, tuple)) else [min_high_thresh]
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in items):
        raise ALInputError(f'ACTIVE_LEARNING.CPSP.MIN_HIGH_THRESH must be a number in [0, 1] or a non-empty '
                           f'list of them (one per generation), got {min_high_thresh!r}')


def config_hash(cfg) -> str:
    """Hash of a run's config without ACTIVE_LEARNING.CPSP: the CPSP keys only change the CPSP
    stages, which the settings record apart (so a CPSP variant can adopt another run's round 0,
    and --redo_cpsp can keep a round's labelled training)."""
    plain = to_plain(cfg)
    al = plain.get('ACTIVE_LEARNING')
    if isinstance(al, dict):
        plain['ACTIVE_LEARNING'] = {k: v for k, v in al.items() if k != 'CPSP'}
    return hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:12]


class ALInputError(ValueError):
    """Bad input to the active-learning driver, found before any work starts."""


@dataclass
class RoundOptions:
    cfg_file: str
    strategy: Optional[str] = None
    budget_boxes: Optional[int] = None
    initial_boxes: Optional[int] = None
    initial_min_per_class: Optional[int] = None
    first_round: int = 0
    rounds: int = 1
    cpsp: bool = False
    final_round: bool = False
    extra_tag: str = 'default'
    force: bool = False
    redo_cpsp: bool = False
    epochs: Optional[int] = None
    cpsp_epochs: Optional[int] = None
    seed: int = 0
    workers: int = 2
    batch_size: Optional[int] = None
    device: str = 'auto'
    output_root: Optional[str] = None
    pretrained_model: Optional[str] = None
    initial_from: Optional[str] = None
    launcher: str = 'none'
    tcp_port: int = 18888
    set_cfgs: List[str] = field(default_factory=list)


def read_section(cfg, name: str, defaults: dict, where: str) -> dict:
    node = cfg.get(name, None) if cfg is not None else None
    node = to_plain(node) if node is not None else {}
    if not isinstance(node, dict):
        raise ALInputError(f'{where}: must be a mapping, got {type(node).__name__}')
    unknown = sorted(set(node) - set(defaults))
    if unknown:
        raise ALInputError(f'{where}: unknown key(s) {unknown} (typo?); known: {sorted(defaults)}')
    return {**copy.deepcopy(defaults), **node}
