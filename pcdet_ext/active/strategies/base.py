"""The query-strategy interface, the Selection it returns, and the registry lookup.

Every strategy: `select(summaries, labelled_summaries, budget_boxes, rng, labelled_class_counts)
-> Selection`. `summaries` are the unlabelled pool's FrameSummary objects (never any label),
`labelled_summaries` the same model's summaries of the labelled frames (coreset / CAL use them as
already-covered points), `labelled_class_counts` the labelled frames' true boxes per class (their
labels are known; CAL's class balance fills what the labelled set lacks). A strategy ranks
frames; the Selection keeps the ranked prefix whose *expected* box count
(sum of predicted scores) first reaches the budget, and the rest of the ranking as a reserve that
the annotation step walks on when the true boxes fall short.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ... import registry
from ...datasets.data_io import atomic_write_text
from ..pool import check_budget
from ..summaries import Summaries, check_summaries


@dataclass
class Selection:
    strategy: str
    budget_boxes: int
    frame_ids: List[str]                      # chosen frames, ranked (best first)
    reserve: List[str] = field(default_factory=list)   # the rest of the ranking
    scores: Dict[str, float] = field(default_factory=dict)          # per-frame strategy score
    expected_boxes: Dict[str, float] = field(default_factory=dict)  # predicted boxes per frame
    info: dict = field(default_factory=dict)

    @property
    def ranked(self) -> List[str]:
        return list(self.frame_ids) + list(self.reserve)

    @property
    def total_expected_boxes(self) -> float:
        return float(sum(self.expected_boxes[f] for f in self.frame_ids))

    def to_dict(self) -> dict:
        return {'strategy': self.strategy, 'budget_boxes': self.budget_boxes,
                'frame_ids': list(self.frame_ids), 'reserve': list(self.reserve),
                'scores': {k: float(v) for k, v in self.scores.items()},
                'expected_boxes': {k: float(v) for k, v in self.expected_boxes.items()},
                'total_expected_boxes': self.total_expected_boxes, 'info': self.info}

    def write(self, path) -> None:
        atomic_write_text(json.dumps(self.to_dict(), indent=1) + '\n', Path(path))


def binary_entropy(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f'rng must be a numpy Generator or an integer seed, got {type(rng).__name__}')


def order_by_score(ids: Sequence[str], scores: Dict[str, float]) -> List[str]:
    """Descending score, frame id as the tie-break (deterministic)."""
    return sorted(ids, key=lambda f: (-scores[f], f))


def cut_at_budget(ranked: Sequence[str], expected: Dict[str, float], budget_boxes: float) -> int:
    """Length of the shortest ranked prefix whose expected boxes reach the budget."""
    total = 0.0
    for i, f in enumerate(ranked):
        total += expected[f]
        if total >= budget_boxes:
            return i + 1
    return len(ranked)


class QueryStrategy:
    """Base class. Subclasses set DEFAULTS (their config keys) and implement `rank`."""
    DEFAULTS: dict = {}

    def __init__(self, cfg: Optional[dict] = None, **kwargs):
        given = dict(cfg or {}, **kwargs)
        given = {k.lower(): v for k, v in given.items() if k.upper() != 'NAME'}
        unknown = sorted(set(given) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(f'{type(self).__name__}: unknown option(s) {unknown}; '
                             f'known: {sorted(self.DEFAULTS)}')
        self.cfg = {**self.DEFAULTS, **given}
        for k, v in self.cfg.items():
            setattr(self, k, v)

    @property
    def name(self) -> str:
        return type(self).__name__

    def select(self, summaries, labelled_summaries=None, budget_boxes: int = 0, rng=None,
               labelled_class_counts: Optional[Dict[str, int]] = None) -> Selection:
        budget_boxes = check_budget(budget_boxes)
        summaries = self.prepare(summaries)
        labelled = check_summaries(labelled_summaries, 'labelled_summaries') if labelled_summaries else {}
        rng = as_rng(rng)
        ranked, scores, info = self.rank(summaries, labelled, budget_boxes, rng, labelled_class_counts)
        if sorted(ranked) != sorted(summaries):
            raise AssertionError(f'{self.name}.rank must rank every pool frame exactly once')
        expected = self.expected(summaries)
        n = cut_at_budget(ranked, expected, budget_boxes)
        return Selection(strategy=self.name, budget_boxes=budget_boxes, frame_ids=list(ranked[:n]),
                         reserve=list(ranked[n:]), scores={f: float(scores[f]) for f in ranked},
                         expected_boxes={f: float(expected[f]) for f in ranked}, info=info or {})

    # ---- hooks -----------------------------------------------------------------------------
    def prepare(self, summaries) -> Summaries:
        return check_summaries(summaries, f'{self.name}: summaries')

    def expected(self, summaries: Summaries) -> Dict[str, float]:
        return {f: s.expected_boxes() for f, s in summaries.items()}

    def rank(self, summaries: Summaries, labelled: Summaries, budget_boxes: int, rng: np.random.Generator,
             labelled_class_counts: Optional[Dict[str, int]] = None) -> Tuple[List[str], Dict[str, float], dict]:
        raise NotImplementedError


def greedy_stop(picked: Sequence[str], expected: Dict[str, float], budget_boxes: float,
                reserve_factor: float) -> bool:
    """Greedy strategies pick on until reserve_factor x the budget is covered (the reserve for the
    annotation step), then rank the rest by their last score."""
    return sum(expected[f] for f in picked) >= reserve_factor * budget_boxes


def stack_features(summaries: Summaries, ids: Sequence[str], attr: str, who: str) -> np.ndarray:
    feats = [getattr(summaries[f], attr) for f in ids]
    missing = [f for f, x in zip(ids, feats) if x is None]
    if missing:
        raise ValueError(f'{who}: frames {missing[:3]} have no {attr}; score the pool with the '
                         f'per-box inference hook (forward_with_box_features)')
    return np.stack(feats).astype(np.float64) if feats else np.zeros((0, 0))


def _norm(name: str) -> str:
    return name.replace('_', '').replace('-', '').lower()


def strategy_names() -> List[str]:
    return registry.REGISTRIES['query_strategy'].names()


def build_strategy(name: str, cfg: Optional[dict] = None, **kwargs) -> QueryStrategy:
    """A strategy by name: the registered class name or its lower-case form without
    underscores ('random', 'entropy', 'mc_dropout', 'coreset', 'badge', 'crb', 'cal')."""
    from . import _all  # noqa: F401  (registers the built-in strategies)
    names = strategy_names()
    matches = [n for n in names if n == name or _norm(n) == _norm(str(name))]
    if not matches:
        raise ValueError(f'unknown query strategy {name!r}; available: '
                         f'{[_norm(n) for n in names]}')
    return registry.get('query_strategy', matches[0])(cfg, **kwargs)
