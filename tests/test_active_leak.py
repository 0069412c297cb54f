"""Leak test (issue 6 acceptance): scramble, then delete, the label files of the unlabelled
frames; every strategy's selection, the CPSP banks and the model's pool summaries stay identical,
and the oracle never opened an unlabelled frame."""
import hashlib
import shutil

import numpy as np
import pytest
import torch

from _active_helpers import CLASSES, fake_pool_summaries, tiny_data_cfg
from pcdet_ext.active import (ActivePool, LabelOracle, build_banks, build_label_free_dataloader,
                              build_strategy, score_pool)
from pcdet_ext.datasets.synthetic import generate_dataset

IDS = [f'{i:06d}' for i in range(10)]
STRATEGIES = ['random', 'entropy', 'mc_dropout', 'coreset', 'badge', 'crb', 'cal']


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('al_leak')
    generate_dataset(root, num_frames=len(IDS), seed=11, workers=1, progress=False, write_images=False)
    return root


def _fake_passes(summaries):
    """Deterministic 'stochastic passes' derived from each summary (no label involved)."""
    for s in summaries.values():
        rng = np.random.default_rng(int(s.frame_id))
        s.mc_passes = [{'boxes': s.boxes, 'labels': s.labels,
                        'scores': np.clip(s.scores + rng.normal(0, 0.1, s.num_boxes), 0, 1)} for _ in range(3)]
    return summaries


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _run(root):
    oracle = LabelOracle(root, CLASSES)
    pool = ActivePool(IDS, oracle)
    pool.initial_selection(15, seed=0)
    unl = pool.unlabelled
    fake = _fake_passes(fake_pool_summaries(root, unl))
    lab = fake_pool_summaries(root, pool.labelled)
    second = {f: s for f, s in fake_pool_summaries(root, unl).items()}
    for s in second.values():
        s.scores = (s.scores * 0.8).astype(np.float32)
    out = {'labelled': list(pool.labelled)}
    for name in STRATEGIES:
        summ = (fake, second) if name == 'cal' else fake
        out[name] = build_strategy(name).select(summ, lab, 12, np.random.default_rng(1)).to_dict()
    banks = build_banks(root, oracle, pool.labelled, fake, CLASSES, seed=0)
    out['banks'] = (banks.counts(), _digest([o.points for o in banks.objects + banks.negatives]),
                    _digest([o.box for o in banks.objects + banks.negatives]),
                    [b['frame_id'] for b in banks.backgrounds])
    out['opened'] = sorted(set(oracle.opened))
    assert set(oracle.opened) <= set(pool.labelled)
    return out, unl


def _model_summaries(root, ids, tmp_path):
    from _models_helpers import load_model_cfg
    from pcdet_ext.models import build_network
    cfg = tiny_data_cfg(tmp_path, root)
    ds, loader = build_label_free_dataloader(cfg, CLASSES, ids, root_path=root, batch_size=len(ids))
    _, mcfg = load_model_cfg('SECONDNet', small=True)
    mcfg.POST_PROCESSING.SCORE_THRESH = 0.0
    mcfg.POST_PROCESSING.NMS_CONFIG.NMS_PRE_MAXSIZE = 100
    mcfg.POST_PROCESSING.NMS_CONFIG.NMS_POST_MAXSIZE = 10
    torch.manual_seed(0)
    model = build_network(mcfg, num_class=len(CLASSES), dataset=ds)
    s = score_pool(model, loader)
    return {f: (v.boxes.tolist(), v.scores.tolist(), v.box_features.tolist(), v.box_num_points.tolist())
            for f, v in s.items()}


def test_unlabelled_labels_never_matter(root, tmp_path):
    before, unl = _run(root)
    model_before = _model_summaries(root, unl[:1], tmp_path)
    assert any(len(v[0]) for v in model_before.values())
    label_dir = root / 'training' / 'label_2'
    backup = tmp_path / 'labels_backup'
    shutil.copytree(label_dir, backup)
    try:
        rng = np.random.default_rng(0)
        for f in unl:  # scrambled: other classes, sizes, positions, counts
            lines = [f'{rng.choice(["Car", "Pedestrian", "Cyclist", "DontCare"])} 0.00 0 0.0 '
                     f'{rng.uniform(0, 600):.1f} 150 {rng.uniform(601, 1200):.1f} 300 1.5 1.6 3.9 '
                     f'{rng.uniform(-10, 10):.2f} 1.7 {rng.uniform(5, 50):.2f} 0.1' for _ in range(rng.integers(0, 30))]
            (label_dir / f'{f}.txt').write_text('\n'.join(lines) + '\n')
        scrambled, _ = _run(root)
        assert scrambled == before
        for f in unl:
            (label_dir / f'{f}.txt').unlink()
        deleted, _ = _run(root)
        assert deleted == before
        assert _model_summaries(root, unl[:1], tmp_path) == model_before
    finally:
        shutil.rmtree(label_dir)
        shutil.copytree(backup, label_dir)
