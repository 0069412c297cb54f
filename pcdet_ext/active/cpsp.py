"""CPSP (S-SSAL): object / background banks and pseudo-scene composition.

Banks:
* labelled bank, from the labelled frames only (labels through the LabelOracle): every object
  of the chosen classes with its points (box-centred), and every labelled frame's background
  (all non-DontCare objects removed);
* pseudo bank, from the unlabelled frames through a model's FrameSummaries (no label read):
  a seeded 1-D 2-means over each class's pool scores (>= `low_thresh`) gives a boundary; boxes
  above max(boundary, `min_high_thresh`) are pseudo objects, boxes between `low_thresh` and the
  boundary are hard negatives, pasted without labels; backgrounds have every candidate box
  (score >= low_thresh) removed. The floor matters for a weak teacher (a model trained on a
  handful of frames): its 2-means boundary then splits "unlikely" from "less unlikely" (0.24 for
  pedestrians in docs/benchmarks_al.md, where 3 in 4 such boxes were wrong). Boxes between the
  boundary and the floor are neither objects nor negatives: too doubtful to paste either way,
  they are only cut out of the backgrounds. So are boxes between `background_thresh` and
  `low_thresh` when the former is lower: a weak teacher scores many real objects of the
  backgrounds low, and each one left there is taught as background in every scene built on it.
Refresh (`refresh_pseudo_bank`): the new model's candidates are merged with the old ones per
frame; boxes matched by BEV IoU keep the higher score. Each frame keeps at most
`max_candidates` (the highest-scoring): an early CPSP model can fire hundreds of low-score boxes
per frame, and merging those refresh after refresh would cut whole backgrounds away.

Backgrounds keep only the frame id and the boxes to remove; points are read when a scene is
composed, so banks stay small. A pseudo-scene: a random background, then objects (and hard
negatives) at their recorded poses, each rejected if its BEV footprint overlaps any already
placed box (pcdet_ext.ops.iou3d_nms), and set on the background's ground (the lowest local
points). Everything is deterministic for a seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..datasets.augmentor.object_paste import paste_objects, remove_points_in_boxes
from ..datasets.data_io import atomic_pickle_dump, load_pickle, read_lidar_bin
from ..geometry import enlarge_box3d, limit_period
from .pool import LabelOracle
from .summaries import Summaries, check_summaries

BANK_VERSION = 1


@dataclass
class BankObject:
    points: np.ndarray      # (n, C) box-centred (xyz minus the box centre)
    box: np.ndarray         # (7,) LiDAR box at its recorded pose
    name: str
    score: float            # 1.0 for labelled objects
    frame_id: str
    kind: str               # 'gt' | 'pseudo' | 'negative'


@dataclass
class CPSPBanks:
    class_names: List[str]
    objects: List[BankObject] = field(default_factory=list)     # gt + pseudo positives
    negatives: List[BankObject] = field(default_factory=list)   # hard negatives (no label)
    backgrounds: List[dict] = field(default_factory=list)       # {frame_id, remove_boxes, source}
    labelled_frames: List[dict] = field(default_factory=list)   # {frame_id, boxes, names}
    thresholds: Dict[str, float] = field(default_factory=dict)
    candidates: Dict[str, dict] = field(default_factory=dict)   # unlabelled fid -> boxes/scores/labels
    low_thresh: float = 0.1
    min_high_thresh: float = 0.0   # floor under the pseudo-object thresholds (0: the 2-means boundary alone)
    max_candidates: int = 0        # candidates kept per unlabelled frame, best first (0: all)
    background_thresh: Optional[float] = None  # candidates cut from backgrounds from this score (None: low_thresh)
    background_margin: float = 0.2  # metres added to each cut box's length and width (height: 0.2)
    negative_max_thresh: Optional[float] = None  # negatives score below min(boundary, this) (None: boundary)
    boundaries: Dict[str, float] = field(default_factory=dict)  # per-class 2-means boundary (negatives below)

    def counts(self) -> dict:
        by = {}
        for o in self.objects:
            key = f'{o.kind}:{o.name}'
            by[key] = by.get(key, 0) + 1
        return {'objects': by, 'negatives': len(self.negatives), 'backgrounds': len(self.backgrounds),
                'labelled_frames': len(self.labelled_frames), 'thresholds': dict(self.thresholds),
                'boundaries': dict(getattr(self, 'boundaries', {}) or self.thresholds)}

    def save(self, path) -> None:
        atomic_pickle_dump({'version': BANK_VERSION, 'banks': self}, path)

    @staticmethod
    def load(path) -> 'CPSPBanks':
        obj = load_pickle(path, what='CPSP bank file')
        if not isinstance(obj, dict) or obj.get('version') != BANK_VERSION:
            raise ValueError(f'{path}: not a CPSP bank file of version {BANK_VERSION}')
        return obj['banks']


def lowest_candidate_score(low_thresh: float, background_thresh: Optional[float] = None) -> float:
    """The lowest score a candidate needs: low_thresh, or background_thresh when that is lower."""
    return float(low_thresh) if background_thresh is None else min(float(low_thresh), float(background_thresh))


def cut_threshold(banks: CPSPBanks) -> float:
    """lowest_candidate_score of the banks' own thresholds."""
    return lowest_candidate_score(banks.low_thresh, getattr(banks, 'background_thresh', None))


def check_score_option(value, key: str, what: str, null_means: str) -> None:
    """An optional score setting: None or a number in [0, 1]."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0.0 <= value <= 1.0):
        raise ValueError(f'{what}: {key} must be null ({null_means}) or a number in [0, 1], got {value!r}')


def check_background_options(background_thresh, background_margin, what: str = 'CPSP') -> None:
    """background_thresh: None or a number in [0, 1]; background_margin: a number >= 0 (metres)."""
    check_score_option(background_thresh, 'BACKGROUND_THRESH', what, 'LOW_THRESH')
    if isinstance(background_margin, bool) or not isinstance(background_margin, (int, float)) \
            or not background_margin >= 0:
        raise ValueError(f'{what}: BACKGROUND_MARGIN must be a number of metres >= 0, got {background_margin!r}')


def check_negative_max_thresh(value, what: str = 'CPSP') -> None:
    """NEGATIVE_MAX_THRESH: None (the 2-means boundary alone) or a number in [0, 1]."""
    check_score_option(value, 'NEGATIVE_MAX_THRESH', what, 'the 2-means boundary')


# ---------------------------------------------------------------------------- thresholds
def kmeans_1d(values, seed: int, iters: int = 100):
    """Seeded 1-D k-means with k=2 -> (low centre, high centre); None when < 2 distinct values."""
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(np.unique(v)) < 2:
        return None
    rng = np.random.default_rng(seed)
    c0 = v[rng.integers(len(v))]
    d2 = (v - c0) ** 2
    c1 = v[rng.choice(len(v), p=d2 / d2.sum())]  # k-means++ second centre
    c = np.sort(np.array([c0, c1]))
    for _ in range(iters):
        high = v > c.mean()
        new = np.array([v[~high].mean() if (~high).any() else c[0], v[high].mean() if high.any() else c[1]])
        if np.allclose(new, c):
            break
        c = new
    return float(c[0]), float(c[1])


def class_thresholds(summaries: Summaries, class_names: Sequence[str], seed: int = 0,
                     default: float = 0.5, low_thresh: float = 0.1) -> Dict[str, float]:
    """Per-class high threshold: the boundary (centre midpoint) of a seeded 2-means over the
    pool's scores of that class (scores >= low_thresh); `default` when a class has too few."""
    out = {}
    for i, name in enumerate(class_names):
        scores = [s.scores[(s.labels == i + 1) & (s.scores >= low_thresh)] for s in summaries.values()]
        scores = np.concatenate(scores) if scores else np.zeros(0)
        c = kmeans_1d(scores, seed=seed + i)
        out[name] = float(sum(c) / 2) if c is not None else float(default)
    return out


# ---------------------------------------------------------------------------- banks
def frame_points(root: Path, fid: str) -> np.ndarray:
    return read_lidar_bin(root / 'training' / 'velodyne' / f'{fid}.bin')


def cut_objects(points: np.ndarray, boxes: np.ndarray) -> List[np.ndarray]:
    """Box-centred points inside each box."""
    if len(boxes) == 0:
        return []
    from ..ops.roiaware_pool3d import points_in_boxes_mask
    mask = np.asarray(points_in_boxes_mask(np.ascontiguousarray(points[:, :3]), boxes.astype(np.float32)))
    out = []
    for i in range(len(boxes)):
        p = points[mask[i]].copy()
        p[:, :3] -= boxes[i, :3].astype(np.float32)
        out.append(p)
    return out


def build_labelled_banks(root, oracle: LabelOracle, labelled_ids: Sequence[str],
                         class_names: Sequence[str], min_points: int = 5,
                         remove_extra_width=(0.2, 0.2, 0.2)) -> CPSPBanks:
    """Labelled objects (chosen classes, >= min_points points) and labelled backgrounds."""
    root = Path(root)
    banks = CPSPBanks(class_names=list(class_names))
    for fid in sorted(map(str, labelled_ids)):
        annos = oracle.read(fid)
        boxes = np.asarray(annos['gt_boxes_lidar'], dtype=np.float64).reshape(-1, 7)
        names = np.asarray(annos['gt_names_lidar'])
        points = frame_points(root, fid)
        keep = np.array([n in class_names for n in names], dtype=bool)
        for box, name, pts in zip(boxes[keep], names[keep], cut_objects(points, boxes[keep])):
            if len(pts) >= min_points:
                banks.objects.append(BankObject(pts, box.astype(np.float32), str(name), 1.0, fid, 'gt'))
        banks.backgrounds.append({'frame_id': fid, 'source': 'labelled',
                                  'remove_boxes': enlarge_box3d(boxes, remove_extra_width) if len(boxes) else boxes})
        banks.labelled_frames.append({'frame_id': fid, 'boxes': boxes[keep].astype(np.float32),
                                      'names': names[keep]})
    return banks


def top_candidates(c: dict, k: int) -> dict:
    """The k highest-scoring candidates of one frame, in their original order (k <= 0: all)."""
    if k <= 0 or len(c['scores']) <= k:
        return c
    keep = np.sort(np.argsort(-np.asarray(c['scores']), kind='stable')[:k])
    return {key: v[keep] for key, v in c.items()}


def candidates_from_summaries(summaries: Summaries, low_thresh: float, max_candidates: int = 0,
                              min_points: int = 0) -> Dict[str, dict]:
    """Boxes scoring >= low_thresh with >= min_points LiDAR points (when the summary counts them),
    the `max_candidates` best per frame. A box over empty space can be neither an object nor a
    negative and cuts nothing from a background; kept, it would take the place of a real
    candidate under the cap (a mid-CPSP model fired such boxes at high scores in the benchmark)."""
    out = {}
    for fid, s in summaries.items():
        k = s.scores >= low_thresh
        if min_points > 0 and s.box_num_points is not None:
            k &= s.box_num_points >= min_points
        out[fid] = top_candidates({'boxes': s.boxes[k].copy(), 'scores': s.scores[k].copy(),
                                   'labels': s.labels[k].copy()}, max_candidates)
    return out


def merge_candidates(old: Dict[str, dict], new: Dict[str, dict], match_iou: float = 0.5) -> Dict[str, dict]:
    """Union per frame; a new box matching an old one (same class, BEV IoU >= match_iou) keeps
    the higher score of the two (with its box)."""
    from ..ops.iou3d_nms import boxes_iou_bev
    out = {}
    for fid in sorted(set(old) | set(new)):
        if fid not in old or fid not in new:
            out[fid] = {k: v.copy() for k, v in (old.get(fid) or new[fid]).items()}
            continue
        a, b = old[fid], new[fid]
        keep_a = np.ones(len(a['scores']), dtype=bool)
        keep_b = np.ones(len(b['scores']), dtype=bool)
        if len(a['scores']) and len(b['scores']):
            iou = np.asarray(boxes_iou_bev(a['boxes'], b['boxes']), dtype=np.float64)
            iou = np.where(a['labels'][:, None] == b['labels'][None, :], iou, 0.0)
            while True:
                i, j = np.unravel_index(np.argmax(iou), iou.shape)
                if iou[i, j] < match_iou or iou[i, j] <= 0:
                    break
                if a['scores'][i] >= b['scores'][j]:
                    keep_b[j] = False
                else:
                    keep_a[i] = False
                iou[i, :] = 0
                iou[:, j] = 0
        out[fid] = {k: np.concatenate([a[k][keep_a], b[k][keep_b]]) for k in ('boxes', 'scores', 'labels')}
    return out


def add_pseudo_banks(banks: CPSPBanks, root, candidates: Dict[str, dict], boundaries: Dict[str, float],
                     min_points: int = 5) -> CPSPBanks:
    """Add pseudo objects (score >= max(boundary, banks.min_high_thresh)), hard negatives
    (low_thresh <= score < min(boundary, banks.negative_max_thresh)) and pseudo backgrounds from
    unlabelled candidates (their velodyne points only), every candidate cut out, its length and
    width grown by banks.background_margin (its height by 0.2 m, which keeps the ground under it).
    Candidates between the negatives' top and the object threshold are cut out only: a teacher's
    boxes just under its 2-means boundary are mostly real objects, and a negative is pasted as
    background."""
    root = Path(root)
    low = float(banks.low_thresh)
    margin = float(getattr(banks, 'background_margin', 0.2))
    names = banks.class_names
    bnd = np.array([boundaries[c] for c in names], dtype=np.float64)
    thr = np.maximum(bnd, float(getattr(banks, 'min_high_thresh', 0.0)))
    neg_cap = getattr(banks, 'negative_max_thresh', None)
    neg_top = bnd if neg_cap is None else np.minimum(bnd, float(neg_cap))
    for fid in sorted(candidates):
        c = candidates[fid]
        boxes = np.asarray(c['boxes'], dtype=np.float64).reshape(-1, 7)
        points = frame_points(root, fid)
        cls = np.asarray(c['labels'], dtype=np.int64) - 1
        scores = np.asarray(c['scores'], dtype=np.float64)
        high = (scores >= thr[cls]) & (scores >= low) if len(boxes) else np.zeros(0, dtype=bool)
        negative = (scores < neg_top[cls]) & (scores >= low) if len(boxes) else np.zeros(0, dtype=bool)
        for k, pts in enumerate(cut_objects(points, boxes)):
            if len(pts) < min_points or not (high[k] or negative[k]):
                continue
            obj = BankObject(pts, boxes[k].astype(np.float32), names[int(c['labels'][k]) - 1],
                             float(c['scores'][k]), fid, 'pseudo' if high[k] else 'negative')
            (banks.objects if high[k] else banks.negatives).append(obj)
        banks.backgrounds.append({'frame_id': fid, 'source': 'pseudo',
                                  'remove_boxes': enlarge_box3d(boxes, (margin, margin, 0.2)) if len(boxes) else boxes})
    banks.thresholds = {n: float(t) for n, t in zip(names, thr)}
    banks.boundaries = {n: float(b) for n, b in zip(names, bnd)}
    banks.candidates = candidates
    return banks


def build_banks(root, oracle: LabelOracle, labelled_ids: Sequence[str], summaries: Optional[Summaries],
                class_names: Sequence[str], seed: int = 0, low_thresh: float = 0.1,
                default_thresh: float = 0.5, min_points: int = 5, min_high_thresh: float = 0.0,
                max_candidates: int = 0, background_thresh: Optional[float] = None,
                background_margin: float = 0.2, negative_max_thresh: Optional[float] = None) -> CPSPBanks:
    """Labelled banks + pseudo banks from the unlabelled pool's summaries (None: labelled only).
    `min_high_thresh`, `max_candidates`, `negative_max_thresh` and the background options are kept in the banks, so
    refreshes apply them too. With background_thresh below the summaries' scoring threshold, the
    pool must be scored at it (score_frames(score_thresh=cut_threshold(...)))."""
    check_background_options(background_thresh, background_margin, 'build_banks')
    check_negative_max_thresh(negative_max_thresh, 'build_banks')
    if not 0.0 <= float(min_high_thresh) <= 1.0:
        raise ValueError(f'build_banks: min_high_thresh must be in [0, 1], got {min_high_thresh!r}')
    if isinstance(max_candidates, bool) or int(max_candidates) != max_candidates or max_candidates < 0:
        raise ValueError(f'build_banks: max_candidates must be an integer >= 0 (0: all), got {max_candidates!r}')
    labelled = set(map(str, labelled_ids))
    banks = build_labelled_banks(root, oracle, sorted(labelled), class_names, min_points=min_points)
    banks.low_thresh = float(low_thresh)
    banks.min_high_thresh = float(min_high_thresh)
    banks.max_candidates = int(max_candidates)
    banks.background_thresh = None if background_thresh is None else float(background_thresh)
    banks.background_margin = float(background_margin)
    banks.negative_max_thresh = None if negative_max_thresh is None else float(negative_max_thresh)
    if summaries:
        summaries = check_summaries(summaries, 'build_banks: summaries')
        overlap = sorted(labelled & set(summaries))
        if overlap:
            raise ValueError(f'build_banks: frames {overlap[:5]} are labelled and also in the '
                             f'unlabelled summaries')
        thresholds = class_thresholds(summaries, class_names, seed=seed, default=default_thresh,
                                      low_thresh=low_thresh)
        add_pseudo_banks(banks, root, candidates_from_summaries(summaries, cut_threshold(banks), banks.max_candidates,
                                                                min_points), thresholds, min_points=min_points)
    return banks


def refresh_pseudo_bank(banks: CPSPBanks, root, new_summaries: Summaries, seed: int = 0,
                        match_iou: float = 0.5, default_thresh: float = 0.5,
                        min_points: int = 5) -> CPSPBanks:
    """New banks: the labelled part kept, the pseudo part rebuilt from the old candidates merged
    with the new model's (matched boxes keep the higher score) and re-thresholded."""
    cap = int(getattr(banks, 'max_candidates', 0))
    new = candidates_from_summaries(check_summaries(new_summaries, 'refresh: summaries'), cut_threshold(banks),
                                    cap, min_points)
    merged = {f: top_candidates(c, cap) for f, c in merge_candidates(banks.candidates, new, match_iou).items()}
    out = CPSPBanks(class_names=list(banks.class_names), low_thresh=banks.low_thresh,
                    min_high_thresh=float(getattr(banks, 'min_high_thresh', 0.0)), max_candidates=cap,
                    background_thresh=getattr(banks, 'background_thresh', None),
                    background_margin=float(getattr(banks, 'background_margin', 0.2)),
                    negative_max_thresh=getattr(banks, 'negative_max_thresh', None),
                    objects=[o for o in banks.objects if o.kind == 'gt'],
                    backgrounds=[b for b in banks.backgrounds if b['source'] == 'labelled'],
                    labelled_frames=list(banks.labelled_frames))
    from .summaries import FrameSummary
    as_summaries = {f: FrameSummary(f, c['boxes'], c['scores'], c['labels'],
                                    np.zeros((len(c['scores']), 0))) for f, c in merged.items()}
    thresholds = class_thresholds(as_summaries, banks.class_names, seed=seed, default=default_thresh,
                                  low_thresh=banks.low_thresh)
    return add_pseudo_banks(out, root, merged, thresholds, min_points=min_points)


# ---------------------------------------------------------------------------- composition
def ground_z(points: np.ndarray, box: np.ndarray, radius_margin: float = 1.0, n_lowest: int = 5) -> Optional[float]:
    """Ground height under a box: mean z of the lowest background points within its BEV
    footprint plus a margin; None when there are too few points."""
    r = float(np.hypot(box[3], box[4])) / 2 + radius_margin
    near = np.hypot(points[:, 0] - box[0], points[:, 1] - box[1]) <= r
    if near.sum() < n_lowest:
        return None
    z = np.sort(points[near, 2])[:n_lowest]
    return float(z.mean())


def check_object_rotation(value, what: str = 'CPSP.OBJECT_ROTATION') -> float:
    """The largest per-object turn (radians) as a float; ValueError unless a number in [0, pi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= np.pi:
        raise ValueError(f'{what} must be an angle in [0, pi] (radians; 0: recorded poses), got {value!r}')
    return float(value)


def rotate_about_sensor(points: np.ndarray, box: np.ndarray, angle: float):
    """An object turned by `angle` about the sensor's z axis: its centre moves along the circle of
    its range and its heading and box-centred points turn with it. The sensor then sees the same
    side of it from the same range, so its point pattern stays what a scan there would give."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    box = box.copy()
    box[:2] = rot @ box[:2]
    box[6] = float(limit_period(box[6] + angle))
    points = points.copy()
    points[:, :2] = (points[:, :2].astype(np.float64) @ rot.T).astype(points.dtype)
    return points, box


def compose_scene(banks: CPSPBanks, root, rng: np.random.Generator, objects_per_class: Dict[str, int],
                  negatives_per_scene: int = 5, ground_align: bool = True, object_rotation: float = 0.0) -> dict:
    """One pseudo-scene: {frame_id (background), points, gt_boxes (K, 7), gt_names (K,)}.

    object_rotation > 0 turns each object by an angle drawn uniformly in [-object_rotation,
    object_rotation] about the sensor (`rotate_about_sensor`) before the collision check: with a
    few dozen labelled pedestrians or cyclists, the recorded poses alone would show every one of
    them at the same few places. 0 keeps the recorded poses (and draws nothing)."""
    from ..ops.iou3d_nms import boxes_iou_bev
    if not banks.backgrounds:
        raise ValueError('compose_scene: the bank has no backgrounds')
    bg = banks.backgrounds[int(rng.integers(len(banks.backgrounds)))]
    points = frame_points(Path(root), bg['frame_id'])
    if len(bg['remove_boxes']):
        points = remove_points_in_boxes(points, np.asarray(bg['remove_boxes']))
    by_class: Dict[str, List[int]] = {}
    for i, o in enumerate(banks.objects):
        by_class.setdefault(o.name, []).append(i)
    todo = []
    for name in banks.class_names:
        pool = by_class.get(name, [])
        n = min(int(objects_per_class.get(name, 0)), len(pool))
        if n:
            todo += [(banks.objects[j], True) for j in rng.choice(pool, size=n, replace=False)]
    order = rng.permutation(len(todo))
    todo = [todo[i] for i in order]
    if banks.negatives and negatives_per_scene > 0:
        n = min(negatives_per_scene, len(banks.negatives))
        todo += [(banks.negatives[j], False) for j in rng.choice(len(banks.negatives), size=n, replace=False)]
    placed_boxes, placed_pts, labelled = [], [], []
    for obj, positive in todo:
        box, pts = obj.box.astype(np.float64).copy(), obj.points
        if object_rotation > 0:
            pts, box = rotate_about_sensor(pts, box, rng.uniform(-object_rotation, object_rotation))
        if placed_boxes:
            iou = np.asarray(boxes_iou_bev(box[None].astype(np.float32), np.stack(placed_boxes).astype(np.float32)))
            if (iou > 0).any():
                continue
        if ground_align:
            g = ground_z(points, box)
            if g is not None:
                box[2] = g + box[5] / 2
        placed_boxes.append(box)
        placed_pts.append(pts)
        labelled.append((positive, obj.name))
    if placed_boxes:
        points, _ = paste_objects(points, None, placed_pts, np.stack(placed_boxes).astype(np.float32), relative=True)
    pos = [i for i, (p, _) in enumerate(labelled) if p]
    boxes = np.stack([placed_boxes[i] for i in pos]).astype(np.float32) if pos else np.zeros((0, 7), np.float32)
    names = np.array([labelled[i][1] for i in pos], dtype='<U16')
    return {'frame_id': bg['frame_id'], 'points': points, 'gt_boxes': boxes, 'gt_names': names}


def labelled_scene(banks: CPSPBanks, root, rng: np.random.Generator) -> dict:
    """A plain labelled frame (its points and labelled boxes, from the bank)."""
    if not banks.labelled_frames:
        raise ValueError('labelled_scene: the bank has no labelled frames')
    lf = banks.labelled_frames[int(rng.integers(len(banks.labelled_frames)))]
    return {'frame_id': lf['frame_id'], 'points': frame_points(Path(root), lf['frame_id']),
            'gt_boxes': np.asarray(lf['boxes'], np.float32).reshape(-1, 7), 'gt_names': np.asarray(lf['names'])}
