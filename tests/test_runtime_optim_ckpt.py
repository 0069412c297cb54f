"""Optimizer / LR schedule builders, checkpoint files, load_data_to_gpu."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from pcdet_ext.config import ConfigDict
from pcdet_ext.runtime import (CheckpointError, build_optimizer, build_scheduler, checkpoint_state,
                               list_checkpoints, load_data_to_gpu, load_params_from_file,
                               load_params_with_optimizer, prune_checkpoints, resume_latest, save_checkpoint)
import pcdet_ext.runtime.checkpoint as ckpt_mod


def _optim_cfg(**kw):
    base = dict(OPTIMIZER='adam_onecycle', LR=0.01, WEIGHT_DECAY=0.01, MOMENTUM=0.9, MOMS=[0.95, 0.85],
                PCT_START=0.4, DIV_FACTOR=10, DECAY_STEP_LIST=[2, 3], LR_DECAY=0.1, LR_CLIP=1e-7,
                LR_WARMUP=False, WARMUP_EPOCH=1, GRAD_NORM_CLIP=10)
    base.update(kw)
    return ConfigDict(base)


def test_onecycle_shape_and_momentum():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, _optim_cfg())
    assert isinstance(opt, torch.optim.AdamW)
    sched, warm = build_scheduler(opt, total_iters_each_epoch=10, total_epochs=10, last_epoch=0,
                                  optim_cfg=_optim_cfg())
    assert warm is None
    lrs, moms = [], []
    for it in range(100):
        sched.step(it)
        lrs.append(sched.get_lr()[0])
        moms.append(opt.param_groups[0]['betas'][0])
    assert lrs[0] == pytest.approx(0.001)               # LR / DIV_FACTOR
    assert max(lrs) == pytest.approx(0.01, rel=1e-3) and int(np.argmax(lrs)) == 40  # peak at PCT_START
    assert lrs[-1] < 1e-5                               # anneals to ~LR / DIV / 1e4
    assert moms[0] == pytest.approx(0.95) and moms[40] == pytest.approx(0.85)
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:40], lrs[1:41]))


def test_step_decay_warmup_and_sgd():
    model = nn.Linear(3, 2)
    cfg = _optim_cfg(OPTIMIZER='sgd', LR_WARMUP=True)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]['momentum'] == 0.9
    sched, _ = build_scheduler(opt, 10, 4, 0, cfg)
    lr = lambda it: (sched.step(it), sched.get_lr()[0])[1]  # noqa: E731
    assert lr(0) == pytest.approx(0.001) and lr(5) < 0.01   # warming up
    assert lr(15) == pytest.approx(0.01)
    assert lr(25) == pytest.approx(0.001) and lr(35) == pytest.approx(0.0001)
    opt = build_optimizer(model, _optim_cfg(OPTIMIZER='adam'))
    assert type(opt) is torch.optim.Adam
    with pytest.raises(ValueError, match="unknown optimizer 'adamw_typo'"):
        build_optimizer(model, _optim_cfg(OPTIMIZER='adamw_typo'))


def test_atomic_save_prune_and_order(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, _optim_cfg())
    for e in (1, 2, 3, 10):
        save_checkpoint(checkpoint_state(model, opt, e, e * 5), tmp_path / f'checkpoint_epoch_{e}')
    assert [p.name for p in list_checkpoints(tmp_path)] == [f'checkpoint_epoch_{e}.pth' for e in (1, 2, 3, 10)]
    prune_checkpoints(tmp_path, 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ['checkpoint_epoch_3.pth', 'checkpoint_epoch_10.pth']
    state = torch.load(tmp_path / 'checkpoint_epoch_10.pth', weights_only=False)
    assert set(state) == {'epoch', 'it', 'model_state', 'optimizer_state', 'version'}
    assert state['epoch'] == 10 and state['it'] == 50 and state['version'].startswith('pcdet_ext+')

    def dying_save(obj, f):  # a crash half-way through writing
        f.write(b'partial')
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt_mod.torch, 'save', dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(checkpoint_state(model, opt, 11, 55), tmp_path / 'checkpoint_epoch_11')
    assert sorted(os.listdir(tmp_path)) == ['checkpoint_epoch_10.pth', 'checkpoint_epoch_3.pth']


def test_resume_roundtrip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = build_optimizer(model, _optim_cfg())
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    save_checkpoint(checkpoint_state(model, opt, 2, 7), tmp_path / 'checkpoint_epoch_2')
    (tmp_path / 'checkpoint_epoch_3.pth').write_bytes(b'not a checkpoint')  # newest is corrupt
    model2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt2 = build_optimizer(model2, _optim_cfg())
    it, epoch, path = resume_latest(model2, tmp_path, optimizer=opt2)
    assert (it, epoch, path.name) == (7, 2, 'checkpoint_epoch_2.pth')
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()['state'][0]['exp_avg'], opt2.state_dict()['state'][0]['exp_avg'])
    with pytest.raises(CheckpointError, match='checkpoint_epoch_3.pth cannot be read'):
        load_params_from_file(model2, tmp_path / 'checkpoint_epoch_3.pth')
    with pytest.raises(CheckpointError, match='does not exist'):
        load_params_from_file(model2, tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError, match='does not match the model'):
        load_params_with_optimizer(nn.Linear(5, 5), tmp_path / 'checkpoint_epoch_2.pth')
    assert resume_latest(model2, tmp_path / 'empty') == (0, 0, None)


def test_partial_load_and_spconv1_weight_layout(tmp_path):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Parameter(torch.zeros(16, 3, 3, 3, 4))  # ours: [out, kz, ky, kx, in]
            self.head = nn.Linear(4, 2)
    src = torch.randn(3, 3, 3, 4, 16)                              # spconv 1.x: [kz, ky, kx, in, out]
    save_checkpoint({'model_state': {'conv': src, 'head.weight': torch.randn(7, 7), 'extra': torch.ones(1)},
                     'epoch': 1, 'it': 1}, tmp_path / 'w.pth')
    m = M()
    head_before = m.head.weight.clone()
    logged = []
    logger = type('L', (), {'info': staticmethod(logged.append)})()
    load_params_from_file(m, tmp_path / 'w.pth', logger=logger)  # to_cpu=False, as OpenPCDet's train.py passes
    assert torch.equal(m.conv.data, src.permute(4, 0, 1, 2, 3))
    assert torch.equal(m.head.weight, head_before)               # shape mismatch: left alone
    # the log names where the weights went (the CPU model), not the to_cpu flag
    assert logged[0].endswith('w.pth to CPU') and logged[-1] == '==> Done (loaded 1/3)'


def test_load_data_to_gpu_types():
    batch = {'points': np.zeros((5, 5), np.float32), 'voxel_coords': np.zeros((3, 4), np.int32),
             'frame_id': np.array(['000001']), 'image_shape': np.array([[375, 1242]]),
             'images': np.zeros((1, 8, 9, 3), np.float32), 'calib': [object()], 'batch_size': 1,
             'gt_names': np.array(['Car'], dtype=object), 'already': torch.ones(2)}
    load_data_to_gpu(batch, 'cpu')
    assert batch['points'].dtype == torch.float32 and batch['voxel_coords'].dtype == torch.float32
    assert batch['image_shape'].dtype == torch.int32
    assert tuple(batch['images'].shape) == (1, 3, 8, 9)
    assert isinstance(batch['frame_id'], np.ndarray) and isinstance(batch['gt_names'], np.ndarray)
    assert batch['batch_size'] == 1 and isinstance(batch['calib'], list)
