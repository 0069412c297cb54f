"""BADGE (Ash et al. 2020) for a detector: k-means++ seeding on gradient embeddings.

A box's embedding is the gradient of the classification loss w.r.t. the last classification
layer under its own predicted (hypothetical) label: (p - onehot(argmax p)) outer box feature.
A frame's embedding is the mean over its boxes (zero without boxes). Frames are picked by
k-means++: the largest-norm embedding first, then each with probability ~ D^2 to the picked set."""
from __future__ import annotations

import numpy as np

from ...registry import register
from .base import QueryStrategy, greedy_stop, order_by_score


def gradient_embedding(cls_probs: np.ndarray, box_features: np.ndarray) -> np.ndarray:
    """(K, C) probs, (K, F) features -> (C * F,) frame embedding (mean over boxes)."""
    p = np.asarray(cls_probs, dtype=np.float64)
    f = np.asarray(box_features, dtype=np.float64)
    if len(p) == 0:
        return np.zeros(p.shape[1] * f.shape[1])
    g = p.copy()
    g[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
    return np.einsum('kc,kf->cf', g, f).reshape(-1) / len(p)


@register('query_strategy')
class BADGE(QueryStrategy):
    DEFAULTS = {'reserve_factor': 2.0}

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        ids = sorted(summaries)
        emb = []
        for f in ids:
            s = summaries[f]
            if s.box_features is None:
                raise ValueError(f'BADGE: frame {f} has no box_features; score the pool with the '
                                 f'per-box inference hook (forward_with_box_features)')
            emb.append(gradient_embedding(s.cls_probs, s.box_features))
        dims = {e.shape[0] for e in emb}
        if len(dims) > 1:
            raise ValueError(f'BADGE: frames have different embedding sizes {sorted(dims)}')
        x = np.stack(emb)
        expected = self.expected(summaries)
        d2 = np.full(len(ids), np.inf)
        free = np.ones(len(ids), dtype=bool)
        picked, scores = [], {}
        while free.any() and not greedy_stop(picked, expected, budget_boxes, self.reserve_factor):
            if not picked:
                norms = (x * x).sum(1)
                i = int(np.argmax(norms))
                scores[ids[i]] = float(norms[i])
            else:
                w = np.where(free, d2, 0.0)
                if w.sum() <= 0:  # every free frame coincides with a picked one: uniform draw
                    w = free.astype(np.float64)
                i = int(rng.choice(len(ids), p=w / w.sum()))
                scores[ids[i]] = float(d2[i])
            picked.append(ids[i])
            free[i] = False
            d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1))
        rest = [ids[i] for i in np.where(free)[0]]
        scores.update({f: float(d2[ids.index(f)]) for f in rest})
        return picked + order_by_score(rest, scores), scores, {}
