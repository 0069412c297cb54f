"""CAL (S-SSAL, arXiv 2501.15449): cascaded uncertainty -> diversity -> class balance.

Input: the pool's summaries from two models, the labelled-only detector and the CPSP
detector, merged box by box (`merge_model_summaries`, BEV IoU with
pcdet_ext.ops.iou3d_nms.boxes_iou_bev). A box both models found gets the mean of their scores;
a box only one model found gets half its score (the other model said 0), so disagreement
between the models reads as uncertainty. A single summaries dict is accepted too.

Selection, in passes over the frames ordered by uncertainty (mean binary entropy of the merged
box scores); a frame is accepted when
  1. its uncertainty is at least the pass's quantile threshold,
  2. its boxes are new: the mean over its boxes of the cosine distance to the nearest box of the
     labelled frames and of the frames accepted so far is at least the pass's threshold,
  3. it balances the classes: at least the pass's share (balance_thresh) of its expected boxes
     fits in the classes' open quotas. Quotas (in expected boxes, summing to the budget) fill
     what the labelled set lacks: class c's target is share_c x (labelled boxes + budget), its
     quota the target minus its labelled boxes (at least 0), all scaled to the budget. Without
     the labelled counts, or with balance 'budget', a quota is budget x share_c.
Each pass that does not meet the budget relaxes all three thresholds; once the balance threshold
has relaxed to 0 the quotas are off, so the budget is always met when the pool allows.

Why the share rule: nearly every frame has cars, so a rule that refuses any frame holding a class
at its quota refuses everything once the car quota is met; and a pool the model barely detects a
class in (one labelled cyclist, a weak model) needs that class's quota to grow with its shortage
in the labelled set, not with the budget alone (docs/benchmarks_al.md).
"""
from __future__ import annotations


import numpy as np

from ...registry import register
from ..summaries import FrameSummary, Summaries, check_summaries
from .base import QueryStrategy, binary_entropy, order_by_score


def merge_frame(a: FrameSummary, b: FrameSummary, merge_iou: float) -> FrameSummary:
    """Merge one frame's boxes from two models (same class, BEV IoU >= merge_iou, greedy by IoU)."""
    na, nb = a.num_boxes, b.num_boxes
    pairs = []
    if na and nb:
        from ...ops.iou3d_nms import boxes_iou_bev
        iou = np.asarray(boxes_iou_bev(a.boxes, b.boxes), dtype=np.float64)
        iou = np.where(a.labels[:, None] == b.labels[None, :], iou, 0.0)
        while True:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            if iou[i, j] < merge_iou or iou[i, j] <= 0:
                break
            pairs.append((int(i), int(j)))
            iou[i, :] = 0
            iou[:, j] = 0
    ma, mb = {i for i, _ in pairs}, {j for _, j in pairs}
    has_feat = a.box_features is not None and b.box_features is not None
    has_pts = a.box_num_points is not None and b.box_num_points is not None
    rows = []  # (box, score, label, probs, feat, npts)
    for i, j in pairs:
        src, k = (a, i) if a.scores[i] >= b.scores[j] else (b, j)
        feat = (a.box_features[i] + b.box_features[j]) / 2 if has_feat else None
        rows.append((src.boxes[k], (a.scores[i] + b.scores[j]) / 2, src.labels[k],
                     (a.cls_probs[i] + b.cls_probs[j]) / 2, feat,
                     src.box_num_points[k] if has_pts else None))
    for s, taken in ((a, ma), (b, mb)):
        for k in range(s.num_boxes):
            if k not in taken:
                rows.append((s.boxes[k], s.scores[k] / 2, s.labels[k], s.cls_probs[k] / 2,
                             s.box_features[k] if has_feat else None,
                             s.box_num_points[k] if has_pts else None))
    c = max(a.cls_probs.shape[1], b.cls_probs.shape[1])
    fdim = a.box_features.shape[1] if has_feat else 0
    ff = None
    if a.frame_feature is not None and b.frame_feature is not None:
        ff = (a.frame_feature + b.frame_feature) / 2
    return FrameSummary(
        frame_id=a.frame_id,
        boxes=np.array([r[0] for r in rows]).reshape(-1, 7), scores=np.array([r[1] for r in rows]),
        labels=np.array([r[2] for r in rows]), cls_probs=np.array([r[3] for r in rows]).reshape(-1, c),
        box_features=np.array([r[4] for r in rows]).reshape(-1, fdim) if has_feat else None,
        frame_feature=ff,
        box_num_points=np.array([r[5] for r in rows]) if has_pts else None)


def merge_model_summaries(a: Summaries, b: Summaries, merge_iou: float = 0.5) -> Summaries:
    a = check_summaries(a, 'CAL: first model summaries')
    b = check_summaries(b, 'CAL: second model summaries')
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f'CAL: the two models scored different frames (e.g. {diff})')
    return {f: merge_frame(a[f], b[f], merge_iou) for f in sorted(a)}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@register('query_strategy')
class CAL(QueryStrategy):
    DEFAULTS = {'merge_iou': 0.5, 'class_names': None, 'class_shares': None, 'balance': 'labelled',
                'uncertainty_quantile': 0.5, 'uncertainty_step': 0.25,
                'diversity_thresh': 0.1, 'diversity_relax': 0.5,
                'balance_thresh': 0.5, 'balance_relax': 0.5}
    BALANCES = ('labelled', 'budget')

    def __init__(self, cfg=None, **kwargs):
        super().__init__(cfg, **kwargs)
        self._check_options()  # at construction: al_round.py builds the strategy before any training

    def prepare(self, summaries) -> Summaries:
        if isinstance(summaries, (tuple, list)) and len(summaries) == 2 and all(isinstance(s, dict) for s in summaries):
            return merge_model_summaries(summaries[0], summaries[1], self.merge_iou)
        return check_summaries(summaries, 'CAL: summaries')

    def _shares(self, num_class: int) -> np.ndarray:
        if self.class_shares is None:
            return np.full(num_class, 1.0 / num_class)
        if self.class_names is None:
            raise ValueError('CAL: class_shares needs class_names (their order)')
        unknown = sorted(set(self.class_shares) - set(self.class_names))
        if unknown:
            raise ValueError(f'CAL: class_shares has unknown classes {unknown}')
        share = np.array([float(self.class_shares.get(c, 0.0)) for c in self.class_names])
        if share.sum() <= 0:
            raise ValueError('CAL: class_shares must have a positive sum')
        return share / share.sum()

    def _quotas(self, num_class: int, budget_boxes: int, labelled_class_counts=None):
        """(quotas in expected boxes, 'labelled' or 'budget': what they were computed from)."""
        share = self._shares(num_class)
        if self.balance == 'budget' or labelled_class_counts is None:
            return share * budget_boxes, 'budget'
        if self.class_names is None:
            raise ValueError('CAL: labelled_class_counts needs class_names (their order)')
        have = np.array([float(labelled_class_counts.get(c, 0)) for c in self.class_names])
        gap = np.maximum(share * (have.sum() + budget_boxes) - have, 0.0)
        return gap * (budget_boxes / gap.sum()), 'labelled'  # the gaps add up to at least the budget (>= 1)

    def _check_options(self) -> None:
        if self.balance not in self.BALANCES:
            raise ValueError(f'CAL: balance must be one of {self.BALANCES}, got {self.balance!r}')
        # each threshold must reach 0 in finitely many passes, so the budget is always met
        if not float(self.uncertainty_step) > 0:
            raise ValueError(f'CAL: uncertainty_step must be > 0, got {self.uncertainty_step!r}')
        for k in ('diversity_relax', 'balance_relax'):
            if not 0 <= float(getattr(self, k)) < 1:
                raise ValueError(f'CAL: {k} must be in [0, 1), got {getattr(self, k)!r}')

    def rank(self, summaries, labelled, budget_boxes, rng, labelled_class_counts=None):
        ids = sorted(summaries)
        num_class = len(self.class_names) if self.class_names else \
            max([s.cls_probs.shape[1] for s in summaries.values()] +
                [int(s.labels.max()) for s in summaries.values() if s.num_boxes] + [1])
        for f in ids:
            if summaries[f].num_boxes and summaries[f].box_features is None:
                raise ValueError(f'CAL: frame {f} has no box_features; score the pool with the '
                                 f'per-box inference hook (forward_with_box_features)')
        unc = {f: float(binary_entropy(summaries[f].scores).mean()) if summaries[f].num_boxes else 0.0
               for f in ids}
        per_class = {f: summaries[f].expected_per_class(num_class) for f in ids}
        expected = self.expected(summaries)
        feats = {f: _unit(summaries[f].box_features.astype(np.float64)) for f in ids
                 if summaries[f].num_boxes}
        ref = [_unit(s.box_features.astype(np.float64)) for s in labelled.values()
               if s.num_boxes and s.box_features is not None]
        quotas, base = self._quotas(num_class, budget_boxes, labelled_class_counts)
        order = order_by_score(ids, unc)
        u_all = np.array([unc[f] for f in ids])

        picked, counts, total = [], np.zeros(num_class), 0.0
        u_q, d_thr, b_thr = float(self.uncertainty_quantile), float(self.diversity_thresh), float(self.balance_thresh)
        passes = []
        while total < budget_boxes and len(picked) < len(ids):
            u_thr = float(np.quantile(u_all, u_q)) if u_q > 0 else -np.inf
            accepted = 0
            for f in order:
                if total >= budget_boxes:
                    break
                if f in picked or unc[f] < u_thr:
                    continue
                if b_thr > 0 and per_class[f].sum() > 0:
                    fits = np.minimum(per_class[f], np.maximum(quotas - counts, 0.0)).sum() / per_class[f].sum()
                    if fits < b_thr:
                        continue
                if d_thr > 0 and f in feats and ref:
                    r = np.concatenate(ref, axis=0)
                    div = float((1 - (feats[f] @ r.T).max(axis=1)).mean())
                    if div < d_thr:
                        continue
                picked.append(f)
                counts += per_class[f]
                total += expected[f]
                accepted += 1
                if f in feats:
                    ref.append(feats[f])
            passes.append({'pass': len(passes), 'uncertainty_thresh': u_thr if np.isfinite(u_thr) else None,
                           'diversity_thresh': d_thr, 'balance_thresh': b_thr, 'accepted': accepted})
            if u_q <= 0 and d_thr <= 0 and b_thr <= 0 and accepted == 0:
                break  # nothing left to accept: the rest follows in uncertainty order
            u_q = max(0.0, u_q - float(self.uncertainty_step))
            d_thr = d_thr * float(self.diversity_relax) if d_thr > 1e-3 else 0.0
            b_thr = b_thr * float(self.balance_relax) if b_thr > 0.05 else 0.0
        rest = [f for f in order if f not in set(picked)]
        info = {'quotas': quotas.tolist(), 'quota_base': base, 'expected_per_class': counts.tolist(),
                'passes': passes}
        return picked + rest, unc, info
