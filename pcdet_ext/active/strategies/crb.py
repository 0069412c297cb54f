"""CRB (Luo et al., ICLR 2023): label conciseness -> feature representativeness -> geometric balance.

1. Conciseness: keep the k1 * n frames whose predicted-class distribution has the highest
   entropy (n = frames the budget is expected to need).
2. Representativeness: k-medoids (seeded k-means++ init, Voronoi iterations) with k2 * n
   clusters over the candidates' mean box features; the medoids go on.
3. Geometric balance: greedily add the medoid that keeps the selected boxes' point-density
   distribution (per class, log points per m^3) closest (KL) to the whole pool's, until the
   expected boxes reach the budget.
Everything uses predictions only (no label of the pool is ever seen).
"""
from __future__ import annotations

import math

import numpy as np

from ...registry import register
from .base import QueryStrategy, order_by_score


def class_entropy(labels, scores, num_class: int) -> float:
    """Entropy of the frame's predicted-class distribution (score-weighted label histogram)."""
    if len(labels) == 0:
        return 0.0
    h = np.zeros(num_class)
    np.add.at(h, np.asarray(labels) - 1, np.asarray(scores, dtype=np.float64))
    q = h / max(h.sum(), 1e-12)
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def k_medoids(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 20) -> np.ndarray:
    """Indices of k medoids of the rows of x (k-means++ seeding, then Voronoi iteration)."""
    n = len(x)
    if k >= n:
        return np.arange(n)
    d = np.sqrt(np.maximum((x * x).sum(1)[:, None] - 2 * x @ x.T + (x * x).sum(1)[None, :], 0))
    med = [int(rng.integers(n))]
    for _ in range(1, k):
        w = d[:, med].min(axis=1) ** 2
        w[med] = 0
        med.append(int(rng.choice(n, p=w / w.sum())) if w.sum() > 0 else
                   int(rng.choice(np.setdiff1d(np.arange(n), med))))
    med = np.array(med)
    for _ in range(iters):
        assign = d[:, med].argmin(axis=1)
        new = med.copy()
        for j in range(k):
            members = np.where(assign == j)[0]
            if len(members):
                new[j] = members[d[np.ix_(members, members)].sum(axis=1).argmin()]
        if np.array_equal(np.sort(new), np.sort(med)) or len(set(new.tolist())) < k:
            break
        med = new
    return med


def _density(s) -> np.ndarray:
    vol = np.maximum(np.prod(s.boxes[:, 3:6].astype(np.float64), axis=1), 1e-3)
    return np.log1p(s.box_num_points / vol)


@register('query_strategy')
class CRB(QueryStrategy):
    DEFAULTS = {'k1': 5.0, 'k2': 2.5, 'num_bins': 10, 'num_class': None}

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        ids = sorted(summaries)
        num_class = self.num_class or max([s.cls_probs.shape[1] for s in summaries.values()] +
                                          [int(s.labels.max()) for s in summaries.values() if s.num_boxes])
        for f in ids:
            s = summaries[f]
            if s.num_boxes and (s.box_features is None or s.box_num_points is None):
                raise ValueError(f'CRB: frame {f} lacks box_features or box_num_points; score the '
                                 f'pool with score_pool (per-box inference hook)')
        expected = self.expected(summaries)
        mean_boxes = max(np.mean([expected[f] for f in ids]), 1e-6)
        n_est = max(1, math.ceil(budget_boxes / mean_boxes))
        # 1. conciseness
        conc = {f: class_entropy(summaries[f].labels, summaries[f].scores, num_class) for f in ids}
        stage1 = order_by_score(ids, conc)[:min(len(ids), math.ceil(self.k1 * n_est))]
        # 2. representativeness
        feat_dim = next((s.box_features.shape[1] for s in summaries.values()
                         if s.box_features is not None and s.num_boxes), 1)
        x = np.stack([summaries[f].box_features.mean(0) if summaries[f].num_boxes
                      else np.zeros(feat_dim) for f in stage1]).astype(np.float64)
        k2 = min(len(stage1), math.ceil(self.k2 * n_est))
        stage2 = [stage1[i] for i in sorted(k_medoids(x, k2, rng))]
        # 3. geometric balance against the whole pool's density distribution, per class
        dens = {f: _density(summaries[f]) for f in ids}
        all_d = np.concatenate([dens[f] for f in ids]) if ids else np.zeros(0)
        edges = np.quantile(all_d, np.linspace(0, 1, self.num_bins + 1)) if len(all_d) else np.linspace(0, 1, 2)
        edges = np.unique(edges)
        nb = max(len(edges) - 1, 1)

        def hist(f):
            h = np.zeros((num_class, nb))
            if summaries[f].num_boxes:
                b = np.clip(np.searchsorted(edges, dens[f], side='right') - 1, 0, nb - 1)
                np.add.at(h, (summaries[f].labels - 1, b), summaries[f].scores)
            return h

        hists = {f: hist(f) for f in ids}
        ref = sum(hists.values()) + 1e-3
        ref = ref / ref.sum(axis=1, keepdims=True)

        def kl(h):
            q = (h + 1e-3) / (h + 1e-3).sum(axis=1, keepdims=True)
            return float((ref * np.log(ref / q)).sum())

        picked, acc, total = [], np.zeros((num_class, nb)), 0.0
        left = list(stage2)
        geo = {}
        while left and total < budget_boxes:
            cost = {f: kl(acc + hists[f]) for f in left}
            f = min(left, key=lambda g: (cost[g], g))
            geo[f] = cost[f]
            picked.append(f)
            left.remove(f)
            acc = acc + hists[f]
            total += expected[f]
        rest2 = sorted(left, key=lambda g: (kl(acc + hists[g]), g))
        rest1 = [f for f in stage1 if f not in set(stage2)]
        rest = [f for f in order_by_score(ids, conc) if f not in set(stage1)]
        ranked = picked + rest2 + rest1 + rest
        info = {'n_estimated': n_est, 'stage1': len(stage1), 'stage2': len(stage2),
                'kl_of_selection': kl(acc) if picked else None}
        return ranked, conc, info
