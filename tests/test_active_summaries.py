"""Pool summaries: label-free dataset, model scoring through the per-box hook, MC-dropout passes,
merging across ranks, saving."""
import numpy as np
import pytest
import torch

from _active_helpers import CLASSES, hand_summary, tiny_data_cfg
from pcdet_ext.active import (LabelFreeKittiDataset, build_label_free_dataloader, build_strategy,
                              load_summaries, merge_summaries, save_summaries, score_pool)
from pcdet_ext.active.summaries import score_threshold, summaries_above
from pcdet_ext.datasets.synthetic import generate_dataset

IDS = ['000000', '000001']


@pytest.fixture(scope='module')
def scored(tmp_path_factory):
    from _models_helpers import load_model_cfg
    from pcdet_ext.models import build_network
    root = tmp_path_factory.mktemp('al_summ')
    generate_dataset(root, num_frames=2, seed=2, workers=1, progress=False, write_images=False)
    cfg = tiny_data_cfg(root, root)
    _, mcfg = load_model_cfg('PointPillar', small=True)
    mcfg.POST_PROCESSING.SCORE_THRESH = 0.0
    mcfg.POST_PROCESSING.NMS_CONFIG.NMS_PRE_MAXSIZE = 100
    mcfg.POST_PROCESSING.NMS_CONFIG.NMS_POST_MAXSIZE = 8
    cfg.DATA_PROCESSOR[2].VOXEL_SIZE = [0.4, 0.4, 4.0]
    ds, loader = build_label_free_dataloader(cfg, CLASSES, IDS, root_path=root, batch_size=2)
    torch.manual_seed(0)
    model = build_network(mcfg, num_class=len(CLASSES), dataset=ds)
    return root, ds, loader, model, score_pool(model, loader, mc_passes=2, seed=4)


def test_label_free_dataset_never_has_labels(scored):
    root, ds, _, _, _ = scored
    assert isinstance(ds, LabelFreeKittiDataset)
    assert all('annos' not in info for info in ds.kitti_infos)
    assert 'gt_boxes' not in ds[0]
    with pytest.raises(PermissionError):
        ds.get_label('000000')


def test_summaries_carry_the_hook_outputs(scored):
    _, _, _, model, summ = scored
    assert sorted(summ) == IDS
    s = summ['000000']
    assert s.num_boxes == 8
    assert s.cls_probs.shape == (8, 3) and s.box_features.shape[0] == 8
    assert s.frame_feature.shape == (s.box_features.shape[1],)
    assert s.box_num_points.shape == (8,) and (s.box_num_points >= 0).all()
    np.testing.assert_allclose(s.cls_probs.max(1), s.scores, atol=1e-6)
    assert not model.training and model.return_box_features is False  # hook state restored


def test_mc_passes_are_stochastic_and_reproducible(scored):
    _, _, loader, model, summ = scored
    passes = summ['000000'].mc_passes
    assert len(passes) == 2
    assert not np.array_equal(passes[0]['scores'], summ['000000'].scores[:len(passes[0]['scores'])]) or \
        not np.array_equal(passes[0]['scores'], passes[1]['scores'])
    again = score_pool(model, loader, mc_passes=2, seed=4)
    for f in IDS:
        for a, b in zip(summ[f].mc_passes, again[f].mc_passes):
            np.testing.assert_array_equal(a['scores'], b['scores'])
    sel = build_strategy('mc_dropout').select(summ, None, 1, 0)
    assert sorted(sel.ranked) == IDS


def test_scoring_lower_then_cutting_equals_scoring_at_the_threshold(scored):
    """CPSP scores the pool below the model's threshold for its backgrounds and gives CAL the boxes
    above it: those must be exactly what scoring at the model's threshold returns."""
    _, _, loader, model, summ = scored
    t = float(np.median(np.concatenate([s.scores for s in summ.values()])))
    with score_threshold(model, t):
        assert model.score_thresh == t and model.model_cfg.POST_PROCESSING.SCORE_THRESH == t
        at_t = score_pool(model, loader)
    assert model.score_thresh == 0.0 and model.model_cfg.POST_PROCESSING.SCORE_THRESH == 0.0  # restored
    assert sum(len(at_t[f].scores) for f in IDS) < sum(len(summ[f].scores) for f in IDS)
    cut = summaries_above(summ, t)
    for f in IDS:
        a, b = cut[f], at_t[f]
        assert a.num_boxes == b.num_boxes and (a.scores >= t).all()
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.box_num_points, b.box_num_points)
        np.testing.assert_allclose(a.box_features, b.box_features, atol=1e-5)
        assert a.cls_probs.shape == b.cls_probs.shape and a.mc_passes is None
    with score_threshold(model, None):  # None: the model's own threshold, untouched
        assert model.score_thresh == 0.0


def test_score_pool_refuses_a_labelled_loader(scored):
    _, _, _, model, _ = scored
    with pytest.raises(ValueError, match='LabelFreeKittiDataset'):
        score_pool(model, [{}])
    with pytest.raises(ValueError, match='empty'):
        build_label_free_dataloader(None, CLASSES, [])


def test_merge_and_save(tmp_path):
    local = {'a': hand_summary('a', [0.5]), 'b': hand_summary('b', [0.7, 0.2])}
    assert merge_summaries(local) == local
    import torch.distributed as tdist
    tdist.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0, world_size=1)
    try:
        merged = merge_summaries(local)
    finally:
        tdist.destroy_process_group()
    assert sorted(merged) == ['a', 'b']
    np.testing.assert_array_equal(merged['b'].scores, local['b'].scores)
    save_summaries(merged, tmp_path / 's.pkl')
    back = load_summaries(tmp_path / 's.pkl')
    np.testing.assert_array_equal(back['b'].box_features, local['b'].box_features)
    (tmp_path / 'bad.pkl').write_bytes(b'not a pickle')
    with pytest.raises(ValueError, match='bad.pkl'):
        load_summaries(tmp_path / 'bad.pkl')
