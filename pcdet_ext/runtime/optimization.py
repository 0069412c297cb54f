"""Optimizer and learning-rate schedule builders with OpenPCDet's OPTIMIZATION keys.

OPTIMIZER: adam_onecycle (AdamW, betas (0.9, 0.99), one-cycle LR and momentum as OpenPCDet),
adam, sgd. The schedule is a pure function of the global iteration, so resuming from a
checkpoint's `it` restores it exactly.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
from torch import nn

OPTIMIZERS = ('adam_onecycle', 'adam', 'sgd')


def _read_optim_keys(optim_cfg) -> dict:
    """Read every OPTIMIZATION key the optimizer/schedule understand, up front (config
    convention: a key nobody reads is reported as a typo)."""
    return dict(
        OPTIMIZER=optim_cfg.get('OPTIMIZER', 'adam_onecycle'),
        LR=float(optim_cfg.get('LR', 0.003)),
        WEIGHT_DECAY=float(optim_cfg.get('WEIGHT_DECAY', 0.0)),
        MOMENTUM=float(optim_cfg.get('MOMENTUM', 0.9)),
        MOMS=list(optim_cfg.get('MOMS', [0.95, 0.85])),
        PCT_START=float(optim_cfg.get('PCT_START', 0.4)),
        DIV_FACTOR=float(optim_cfg.get('DIV_FACTOR', 10.0)),
        DECAY_STEP_LIST=list(optim_cfg.get('DECAY_STEP_LIST', [])),
        LR_DECAY=float(optim_cfg.get('LR_DECAY', 0.1)),
        LR_CLIP=float(optim_cfg.get('LR_CLIP', 1e-7)),
        LR_WARMUP=bool(optim_cfg.get('LR_WARMUP', False)),
        WARMUP_EPOCH=float(optim_cfg.get('WARMUP_EPOCH', 1)),
    )


def build_optimizer(model: nn.Module, optim_cfg) -> torch.optim.Optimizer:
    o = _read_optim_keys(optim_cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError('build_optimizer: the model has no trainable parameters')
    name = o['OPTIMIZER']
    if name == 'adam_onecycle':
        # OpenPCDet uses fastai's OptimWrapper with true (decoupled) weight decay = AdamW
        opt = torch.optim.AdamW(params, lr=o['LR'], betas=(o['MOMS'][0], 0.99), weight_decay=o['WEIGHT_DECAY'])
    elif name == 'adam':
        opt = torch.optim.Adam(params, lr=o['LR'], weight_decay=o['WEIGHT_DECAY'])
    elif name == 'sgd':
        opt = torch.optim.SGD(params, lr=o['LR'], weight_decay=o['WEIGHT_DECAY'], momentum=o['MOMENTUM'])
    else:
        raise ValueError(f'OPTIMIZATION.OPTIMIZER: unknown optimizer {name!r}; choose one of {OPTIMIZERS}')
    return opt


def _cos(start: float, end: float, pct: float) -> float:
    """Cosine interpolation start -> end as pct goes 0 -> 1."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class IterScheduler:
    """LR (and Adam beta1 / SGD momentum) as a function of the global iteration.
    `step(it)` sets the values for iteration `it`; `get_lr()` returns them."""

    def __init__(self, optimizer, total_steps: int, o: dict, total_iters_each_epoch: int):
        self.optimizer = optimizer
        self.total_steps = max(int(total_steps), 1)
        self.o = o
        self.onecycle = o['OPTIMIZER'] == 'adam_onecycle'
        self.decay_steps = [s * total_iters_each_epoch for s in o['DECAY_STEP_LIST']]
        self.warmup_iters = int(o['WARMUP_EPOCH'] * total_iters_each_epoch) if o['LR_WARMUP'] else 0
        self.last_it = -1
        self.step(0)

    def lr_mom_at(self, it: int):
        o = self.o
        if self.onecycle:
            lr_max, div = o['LR'], o['DIV_FACTOR']
            low, high = o['MOMS'][1], o['MOMS'][0]
            split = max(int(self.total_steps * o['PCT_START']), 1)
            if it < split:
                pct = it / split
                return _cos(lr_max / div, lr_max, pct), _cos(high, low, pct)
            pct = min((it - split) / max(self.total_steps - split, 1), 1.0)
            return _cos(lr_max, lr_max / div / 1e4, pct), _cos(low, high, pct)
        lr = o['LR']
        decay = 1.0
        for s in self.decay_steps:
            if it >= s:
                decay *= o['LR_DECAY']
        lr = max(lr * decay, o['LR_CLIP'])
        if it < self.warmup_iters:  # cosine warm-up from LR / DIV_FACTOR
            eta_min = o['LR'] / o['DIV_FACTOR']
            lr = eta_min + (lr - eta_min) * (1 - math.cos(math.pi * it / self.warmup_iters)) / 2
        return lr, None

    def step(self, it: Optional[int] = None):
        it = self.last_it + 1 if it is None else int(it)
        lr, mom = self.lr_mom_at(it)
        for g in self.optimizer.param_groups:
            g['lr'] = lr
            if mom is not None:
                if 'betas' in g:
                    g['betas'] = (mom, g['betas'][1])
                elif 'momentum' in g:
                    g['momentum'] = mom
        self.last_it = it

    def get_lr(self) -> List[float]:
        return [g['lr'] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {'last_it': self.last_it}

    def load_state_dict(self, state):
        self.step(state.get('last_it', 0))


def build_scheduler(optimizer, total_iters_each_epoch: int, total_epochs: int, last_epoch: int, optim_cfg):
    """Returns (lr_scheduler, lr_warmup_scheduler) like OpenPCDet; warm-up is folded into the
    main schedule here, so the second item is always None."""
    o = _read_optim_keys(optim_cfg)
    sched = IterScheduler(optimizer, total_iters_each_epoch * total_epochs, o, total_iters_each_epoch)
    if last_epoch is not None and last_epoch > 0:
        sched.step(last_epoch * total_iters_each_epoch)
    return sched, None
