"""Per-class size priors (mean and std of l, w, h in metres): the only 3D knowledge ALPI gets.

Config form (the `SIZE_PRIORS` block of an ALPI config), each class optional; classes not
given keep the KITTI-like defaults below:

    SIZE_PRIORS:
        Car: {MEAN: [3.89, 1.62, 1.53], STD: [0.43, 0.10, 0.14]}
        Van: {MEAN: [5.06, 1.90, 2.21], STD: [0.50, 0.20, 0.25]}

Sizes follow the LiDAR box order (l, w, h) = (dx, dy, dz).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class SizePrior:
    mean: Tuple[float, float, float]  # (l, w, h)
    std: Tuple[float, float, float]


# KITTI-like statistics of the train split (l, w, h).
DEFAULT_SIZE_PRIORS: Dict[str, SizePrior] = {
    'Car': SizePrior((3.89, 1.62, 1.53), (0.43, 0.10, 0.14)),
    'Pedestrian': SizePrior((0.84, 0.66, 1.76), (0.23, 0.14, 0.11)),
    'Cyclist': SizePrior((1.76, 0.60, 1.73), (0.18, 0.12, 0.09)),
}


def _triple(value, where: str) -> Tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: expected 3 numbers (l, w, h), got {value!r}') from None
    if len(vals) != 3:
        raise ValueError(f'{where}: expected 3 numbers (l, w, h), got {len(vals)}')
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f'{where}: every value must be finite and > 0, got {vals}')
    return vals  # type: ignore[return-value]


def _parse_entry(name: str, entry) -> SizePrior:
    where = f'SIZE_PRIORS.{name}'
    if isinstance(entry, SizePrior):
        return SizePrior(_triple(entry.mean, where + '.MEAN'), _triple(entry.std, where + '.STD'))
    if isinstance(entry, Mapping):
        unknown = set(entry) - {'MEAN', 'STD'}
        if unknown:
            raise ValueError(f'{where}: unknown keys {sorted(unknown)} (expected MEAN and STD)')
        if 'MEAN' not in entry or 'STD' not in entry:
            raise ValueError(f'{where}: needs both MEAN and STD')
        return SizePrior(_triple(entry['MEAN'], where + '.MEAN'), _triple(entry['STD'], where + '.STD'))
    if isinstance(entry, Sequence) and len(entry) == 2:  # [[l, w, h], [sl, sw, sh]]
        return SizePrior(_triple(entry[0], where + '[0]'), _triple(entry[1], where + '[1]'))
    raise ValueError(f'{where}: expected {{MEAN: [l, w, h], STD: [l, w, h]}}, got {entry!r}')


class SizePriors:
    """Class name -> SizePrior, defaults merged with config overrides.

    cfg: None or a mapping {class: {MEAN, STD}}; use_defaults=False keeps only the given ones.
    """

    def __init__(self, cfg: Optional[Mapping] = None, use_defaults: bool = True):
        self.priors: Dict[str, SizePrior] = dict(DEFAULT_SIZE_PRIORS) if use_defaults else {}
        for name, entry in (cfg or {}).items():
            self.priors[str(name)] = _parse_entry(str(name), entry)

    def __contains__(self, name: str) -> bool:
        return name in self.priors

    def __getitem__(self, name: str) -> SizePrior:
        if name not in self.priors:
            raise KeyError(f'no size prior for class {name!r}; known: {sorted(self.priors)} '
                           f'(add it under SIZE_PRIORS in the config)')
        return self.priors[name]

    def names(self):
        return sorted(self.priors)

    def require(self, class_names: Iterable[str]) -> None:
        """Config-time check: every class to be labelled has a prior."""
        missing = [c for c in class_names if c not in self.priors]
        if missing:
            raise ValueError(f'SIZE_PRIORS: no size prior for classes {missing}; known: '
                             f'{sorted(self.priors)}')

    def mean_array(self, class_names: Sequence[str]) -> np.ndarray:
        """(C, 3) means in the order of class_names (the network's class index order)."""
        self.require(class_names)
        return np.array([self.priors[c].mean for c in class_names], dtype=np.float32)

    def std_array(self, class_names: Sequence[str]) -> np.ndarray:
        self.require(class_names)
        return np.array([self.priors[c].std for c in class_names], dtype=np.float32)

    def tensors(self, class_names: Sequence[str], device=None, dtype=torch.float32):
        """(mean (C, 3), std (C, 3)) torch tensors for the losses."""
        return (torch.as_tensor(self.mean_array(class_names), dtype=dtype, device=device),
                torch.as_tensor(self.std_array(class_names), dtype=dtype, device=device))

    def to_config(self) -> Dict[str, Dict[str, list]]:
        return {n: {'MEAN': list(p.mean), 'STD': list(p.std)} for n, p in self.priors.items()}
