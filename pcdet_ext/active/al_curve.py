"""The AP-vs-labelled-boxes curve of an active-learning run: per round, the labelled boxes the
model was trained on and its KITTI AP3D (R40, moderate) on the val split; JSON and a PNG."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

METRIC = '{cls}_3d/moderate_R40'


def map_from_eval(result: dict, class_names: Sequence[str]) -> Dict[str, float]:
    """{'mAP': mean over classes, '<cls>': AP} of AP3D R40 moderate (classes absent from the
    evaluation result are left out of the mean)."""
    out = {}
    for c in class_names:
        v = result.get(METRIC.format(cls=c))
        if v is not None:
            out[c] = float(v)
    out['mAP'] = float(np.mean([out[c] for c in class_names if c in out])) if any(c in out for c in class_names) \
        else float('nan')
    return out


def save_curve_png(points: List[dict], class_names: Sequence[str], path, title: str = '') -> None:
    """points: [{'labelled_boxes', 'mAP', '<cls>': AP, ...}] in round order; atomic write."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs = [p['labelled_boxes'] for p in points]
    ax.plot(xs, [p['mAP'] for p in points], 'o-', lw=2, color='k', label='mAP')
    for c in class_names:
        ys = [p.get(c, np.nan) for p in points]
        ax.plot(xs, ys, '.--', lw=1, label=c)
    ax.set_xlabel('labelled boxes')
    ax.set_ylabel('AP3D R40 moderate (%)')
    ax.set_title(title or 'active learning')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=str(path.parent))
    os.close(fd)
    try:
        fig.savefig(tmp, format='png')
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
