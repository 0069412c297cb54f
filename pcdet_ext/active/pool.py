"""Labelled / unlabelled pools, box budgets and the label oracle.

The LabelOracle is the ONLY place in `pcdet_ext.active` that opens label files, and it opens a
frame's labels only once that frame is labelled or being annotated. Unlabelled frames are never
opened (DontCare included), so nothing downstream can peek at their ground truth.

Budgets are counted in boxes of the chosen classes (DontCare and every other class are not
counted) and in frames; both are reported. Pools are written per round as ImageSets-style text
files (one frame id a line) plus a small JSON with the counts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..datasets.data_io import atomic_write_text, read_split_file
from ..datasets.kitti.kitti_label_io import read_label_file
from ..geometry import Calibration, boxes3d_kitti_camera_to_lidar


def check_budget(budget_boxes, what: str = 'budget_boxes') -> int:
    """A box budget must be a positive integer (a budget below one box is smaller than any frame)."""
    if isinstance(budget_boxes, bool) or not isinstance(budget_boxes, (int, np.integer)):
        raise ValueError(f'{what} must be a positive integer number of boxes, got {budget_boxes!r}')
    if budget_boxes < 1:
        raise ValueError(f'{what}={budget_boxes}: the budget is smaller than one frame '
                         f'(a frame holds at least one box); give at least 1 box')
    return int(budget_boxes)


def check_min_per_class(value, what: str = 'min_per_class') -> int:
    """Boxes each class must have in the initial set: an integer >= 0 (0: no class cover)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f'{what} must be an integer >= 0 (0: off), got {value!r}')
    return int(value)


def check_frame_ids(frame_ids: Sequence[str], what: str) -> List[str]:
    ids = [str(f) for f in frame_ids]
    if not ids:
        raise ValueError(f'{what}: the pool is empty (no frame ids)')
    if len(set(ids)) != len(ids):
        dup = sorted({f for f in ids if ids.count(f) > 1})[:5]
        raise ValueError(f'{what}: duplicate frame ids {dup}')
    return ids


class LabelOracle:
    """Reads KITTI label_2 files, but only for frames that are labelled or being annotated.

    root: dataset root (with training/label_2 and training/calib); class_names: the classes that
    count against the budget. `opened` lists every label file read, in order (tests use it)."""

    def __init__(self, root, class_names: Sequence[str], labelled: Iterable[str] = (),
                 split_folder: str = 'training'):
        self.root = Path(root)
        self.split_dir = self.root / split_folder
        if not self.split_dir.is_dir():
            raise ValueError(f'LabelOracle: {self.split_dir} is not a folder (dataset root {self.root})')
        if not class_names:
            raise ValueError('LabelOracle: class_names is empty; the budget needs classes to count')
        self.class_names = list(class_names)
        self._allowed = set(str(f) for f in labelled)
        self.opened: List[str] = []

    @property
    def labelled(self) -> List[str]:
        return sorted(self._allowed)

    def annotate(self, frame_id: str) -> dict:
        """The annotation step: frame_id becomes labelled and its labels are returned."""
        self._allowed.add(str(frame_id))
        return self.read(frame_id)

    def read(self, frame_id: str) -> dict:
        """Labels of a labelled frame (KITTI annotation arrays, with `gt_boxes_lidar` for
        non-DontCare objects). Refuses frames that are not labelled."""
        frame_id = str(frame_id)
        if frame_id not in self._allowed:
            raise PermissionError(f'LabelOracle: frame {frame_id} is not labelled; its labels may '
                                  f'only be read through annotate() when it is selected')
        annos = read_label_file(self.split_dir / 'label_2' / f'{frame_id}.txt')
        self.opened.append(frame_id)
        keep = annos['name'] != 'DontCare'
        if keep.any():
            calib = Calibration(str(self.split_dir / 'calib' / f'{frame_id}.txt'))
            cam = np.concatenate([annos['location'][keep], annos['dimensions'][keep],
                                  annos['rotation_y'][keep][:, None]], axis=1)
            annos['gt_boxes_lidar'] = boxes3d_kitti_camera_to_lidar(cam, calib).reshape(-1, 7)
        else:
            annos['gt_boxes_lidar'] = np.zeros((0, 7))
        annos['gt_names_lidar'] = annos['name'][keep]
        return annos

    def count_boxes(self, annos: dict) -> Dict[str, int]:
        """Boxes per chosen class (DontCare and other classes are not counted)."""
        names = list(annos['name'])
        return {c: int(sum(n == c for n in names)) for c in self.class_names}


@dataclass
class Annotation:
    """Result of an annotation step: frames annotated (in order) and their true box counts."""
    frame_ids: List[str] = field(default_factory=list)
    boxes_per_frame: Dict[str, int] = field(default_factory=dict)
    boxes_per_class: Dict[str, int] = field(default_factory=dict)
    # class cover of the initial draw: boxes annotated past the budget to reach every class, and
    # the classes still short after the cap (both empty when no cover was asked)
    extra_boxes: int = 0
    uncovered: List[str] = field(default_factory=list)

    @property
    def num_boxes(self) -> int:
        return int(sum(self.boxes_per_frame.values()))

    @property
    def num_frames(self) -> int:
        return len(self.frame_ids)

    def to_dict(self) -> dict:
        return {'frame_ids': list(self.frame_ids), 'boxes_per_frame': dict(self.boxes_per_frame),
                'boxes_per_class': dict(self.boxes_per_class), 'num_boxes': self.num_boxes,
                'num_frames': self.num_frames, 'extra_boxes': self.extra_boxes, 'uncovered': list(self.uncovered)}


def annotate_until_budget(ranked_ids: Sequence[str], oracle: LabelOracle, budget_boxes: int) -> Annotation:
    """Annotate frames in ranked order until the true box count reaches the budget.

    The count may exceed the budget by at most the boxes of the last annotated frame; frames
    after the stopping point are never opened."""
    budget_boxes = check_budget(budget_boxes)
    out = Annotation(boxes_per_class={c: 0 for c in oracle.class_names})
    for fid in ranked_ids:
        if out.num_boxes >= budget_boxes:
            break
        _annotate_into(out, fid, oracle)
    return out


def _annotate_into(ann: Annotation, fid: str, oracle: LabelOracle) -> None:
    counts = oracle.count_boxes(oracle.annotate(fid))
    ann.frame_ids.append(str(fid))
    ann.boxes_per_frame[str(fid)] = int(sum(counts.values()))
    for c, n in counts.items():
        ann.boxes_per_class[c] += n


class ActivePool:
    """Labelled and unlabelled frame ids of one round, with the labelled box counts.

    Built from a list of candidate frame ids; `initial_selection` draws random frames up to a
    box budget, `add_annotation` moves annotated frames from unlabelled to labelled."""

    def __init__(self, frame_ids: Sequence[str], oracle: LabelOracle, labelled: Sequence[str] = (),
                 round_index: int = 0):
        ids = check_frame_ids(frame_ids, 'ActivePool frame_ids')
        unknown = sorted(set(map(str, labelled)) - set(ids))
        if unknown:
            raise ValueError(f'ActivePool: labelled frames {unknown[:5]} are not in the pool')
        self.oracle = oracle
        self.all_ids = ids
        self.labelled: List[str] = [str(f) for f in labelled]
        self.round_index = int(round_index)
        self.boxes_per_frame: Dict[str, int] = {}
        self.boxes_per_class: Dict[str, int] = {c: 0 for c in oracle.class_names}
        for fid in self.labelled:  # re-count the labelled frames (they may be read)
            oracle._allowed.add(fid)
            self._count(fid)

    def _count(self, fid: str) -> None:
        counts = self.oracle.count_boxes(self.oracle.read(fid))
        self.boxes_per_frame[fid] = int(sum(counts.values()))
        for c, n in counts.items():
            self.boxes_per_class[c] += n

    @property
    def unlabelled(self) -> List[str]:
        done = set(self.labelled)
        return [f for f in self.all_ids if f not in done]

    @property
    def num_labelled_boxes(self) -> int:
        return int(sum(self.boxes_per_frame.values()))

    def initial_selection(self, budget_boxes: int, seed: int, min_per_class: int = 0,
                          max_extra_boxes: Optional[int] = None) -> Annotation:
        """Random frames (seeded) annotated until `budget_boxes` true boxes are labelled.

        min_per_class > 0: then keep annotating frames in the same random order until every chosen
        class has that many boxes, at most `max_extra_boxes` boxes past the budget (default: the
        budget again). Why: a class with no labelled box is never predicted by the round-0 models,
        so no query strategy can ask for it later (docs/benchmarks_al.md). Only the labels of
        frames that are annotated are read, as for the plain draw; the extra boxes count against
        the budget like any other and are reported in `extra_boxes` / `uncovered`."""
        budget_boxes = check_budget(budget_boxes)
        min_per_class = check_min_per_class(min_per_class)
        candidates = sorted(self.unlabelled)
        if not candidates:
            raise ValueError('initial_selection: no unlabelled frames left in the pool')
        order = [candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))]
        ann = annotate_until_budget(order, self.oracle, budget_boxes)
        if min_per_class > 0:
            cap = budget_boxes if max_extra_boxes is None else int(max_extra_boxes)
            base = ann.num_boxes

            def missing():
                return [c for c, n in ann.boxes_per_class.items() if n < min_per_class]

            for fid in order[ann.num_frames:]:
                if not missing() or ann.num_boxes - base >= cap:
                    break
                _annotate_into(ann, fid, self.oracle)
            ann.extra_boxes = ann.num_boxes - base
            ann.uncovered = missing()
        self.add_annotation(ann)
        return ann

    def add_annotation(self, ann: Annotation) -> None:
        done = set(self.labelled)
        for fid in ann.frame_ids:
            if fid in done:
                raise ValueError(f'add_annotation: frame {fid} is already labelled')
            if fid not in set(self.all_ids):
                raise ValueError(f'add_annotation: frame {fid} is not in the pool')
            self.labelled.append(fid)
            self.boxes_per_frame[fid] = ann.boxes_per_frame[fid]
        for c, n in ann.boxes_per_class.items():
            self.boxes_per_class[c] = self.boxes_per_class.get(c, 0) + n

    def report(self) -> dict:
        return {'round': self.round_index, 'labelled_frames': len(self.labelled),
                'unlabelled_frames': len(self.unlabelled), 'labelled_boxes': self.num_labelled_boxes,
                'labelled_boxes_per_class': dict(self.boxes_per_class),
                'pool_frames': len(self.all_ids)}

    # ---- files -----------------------------------------------------------------------------
    def write(self, round_dir) -> Dict[str, str]:
        """round_dir/{labelled.txt, unlabelled.txt, pool.json} (atomic writes)."""
        d = Path(round_dir)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(''.join(f + '\n' for f in self.labelled), d / 'labelled.txt')
        atomic_write_text(''.join(f + '\n' for f in self.unlabelled), d / 'unlabelled.txt')
        atomic_write_text(json.dumps({**self.report(), 'boxes_per_frame': self.boxes_per_frame},
                                     indent=1, sort_keys=True) + '\n', d / 'pool.json')
        return {k: str(d / f'{k}.txt') for k in ('labelled', 'unlabelled')}

    @classmethod
    def load(cls, round_dir, oracle: LabelOracle, round_index: Optional[int] = None) -> 'ActivePool':
        d = Path(round_dir)
        for name in ('labelled.txt', 'unlabelled.txt'):
            if not (d / name).is_file():
                raise ValueError(f'ActivePool.load: {d / name} not found')
        labelled = read_split_file(d / 'labelled.txt')
        unlabelled = read_split_file(d / 'unlabelled.txt')
        if round_index is None:
            meta = d / 'pool.json'
            round_index = json.loads(meta.read_text()).get('round', 0) if meta.is_file() else 0
        return cls(labelled + unlabelled, oracle, labelled=labelled, round_index=round_index)
