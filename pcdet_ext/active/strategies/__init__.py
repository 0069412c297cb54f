"""Query strategies (registry family 'query_strategy'), one interface:
`select(summaries, labelled_summaries, budget_boxes, rng) -> Selection`.

Built in: Random, Entropy, MCDropout, Coreset, BADGE, CRB, CAL; `build_strategy('mc_dropout')`
also takes the lower-case names."""
from . import _all  # noqa: F401
from .badge import BADGE, gradient_embedding
from .base import (QueryStrategy, Selection, binary_entropy, build_strategy, cut_at_budget,
                   strategy_names)
from .cal import CAL, merge_frame, merge_model_summaries
from .coreset import Coreset
from .crb import CRB, class_entropy, k_medoids
from .entropy import Entropy, frame_entropy
from .mc_dropout import MCDropout
from .random_sampling import Random

__all__ = ['QueryStrategy', 'Selection', 'build_strategy', 'strategy_names', 'binary_entropy',
           'cut_at_budget', 'Random', 'Entropy', 'MCDropout', 'Coreset', 'BADGE', 'CRB', 'CAL',
           'merge_model_summaries', 'merge_frame', 'gradient_embedding', 'class_entropy', 'k_medoids',
           'frame_entropy']
