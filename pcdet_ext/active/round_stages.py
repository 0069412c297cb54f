"""Stage bookkeeping of an active-learning round: atomic done-markers, settings, cleanup.

A stage is done when `round_K/done/<stage>.json` exists; the marker is written atomically after
the stage's artifacts, so a run killed anywhere redoes at most the stage it was in (every stage
is deterministic given its inputs and rewrites its own artifacts atomically)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Optional

from ..datasets.data_io import atomic_write_text


def write_json(obj, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + '\n', path)


def _jsonable(x):
    if hasattr(x, 'tolist'):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f'{type(x).__name__} is not JSON serialisable')


def read_json(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f'{path}: cannot read ({type(e).__name__}: {e})') from None


# the stages of a round in the order they run, with the artifacts each writes in the round folder;
# names are glob patterns (CPSP generations 2, 3 ... are stages cpsp_g<n>, cpsp_train_g<n>)
STAGE_ARTIFACTS = (
    ('pool', ('start',)),
    ('data', ('data',)),
    ('train', ('train',)),
    ('cpsp', ('cpsp', 'summaries_A.pkl')),
    ('cpsp_train', ()),  # under cpsp/
    ('cpsp_g*', ('cpsp_g*',)),
    ('cpsp_train_g*', ()),  # under cpsp_g<n>/
    ('score', ('summaries.pkl', 'summaries_labelled.pkl', 'summaries_labelled_A.pkl')),
    ('select', ('selection.json',)),
    ('annotate', ('annotation.json', 'labelled.txt', 'unlabelled.txt', 'pool.json')),
    ('eval', ('eval.json',)),
    ('round', ('round_summary.json', 'al_curve.json', 'al_curve.png')),
)


class RoundStages:
    def __init__(self, round_dir):
        self.dir = Path(round_dir)
        self.done_dir = self.dir / 'done'

    def marker(self, stage: str) -> Path:
        return self.done_dir / f'{stage}.json'

    def is_done(self, stage: str) -> bool:
        return self.marker(stage).is_file()

    def load(self, stage: str) -> dict:
        return read_json(self.marker(stage))

    def mark(self, stage: str, payload: Optional[dict] = None) -> None:
        write_json({'stage': stage, 'time': time.strftime('%Y-%m-%d %H:%M:%S'), **(payload or {})},
                   self.marker(stage))

    @property
    def finished(self) -> bool:
        return self.is_done('round')

    def settings_file(self) -> Path:
        return self.dir / 'settings.json'

    def remove_stages_after(self, stage: str) -> None:
        """Forget every stage after `stage` (markers first, then artifacts), keeping it and those
        before it: a kill in between leaves stages that are redone, never half-kept ones."""
        names = [n for n, _ in STAGE_ARTIFACTS]
        if stage not in names:
            raise ValueError(f'unknown stage {stage!r}; stages: {names}')
        later = STAGE_ARTIFACTS[names.index(stage) + 1:]
        if self.done_dir.is_dir():
            for name, _ in later:
                for m in self.done_dir.glob(f'{name}.json'):
                    m.unlink(missing_ok=True)
        for _, artifacts in later:
            for a in artifacts:
                for p in self.dir.glob(a):
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink(missing_ok=True)

    def remove_stale_tmp(self) -> None:
        """Temp files left by a kill during an atomic write (never read, just clutter)."""
        if not self.dir.is_dir():
            return
        for p in self.dir.rglob('.*.tmp'):
            p.unlink(missing_ok=True)
        for p in self.dir.rglob('.*.tmp[0-9]*'):
            p.unlink(missing_ok=True)
        for p in list(self.dir.rglob('.gt_database.*')) + list(self.dir.rglob('gt_database.old-*')):
            shutil.rmtree(p, ignore_errors=True)
