"""SparseModule base and SparseSequential (spconv 2.x semantics)."""
from collections import OrderedDict

import torch
from torch import nn

from .tensor import SparseConvTensor


class SparseModule(nn.Module):
    """Marker base: a SparseSequential hands these the whole SparseConvTensor, others its features."""


class SparseSequential(SparseModule):
    """Like nn.Sequential; plain nn modules (BatchNorm1d, ReLU, ...) are applied to `.features`.

    Children are named '0', '1', ... (or by the keyword / OrderedDict names), as spconv names
    them, so state_dict keys match spconv checkpoints.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)
        for name, module in kwargs.items():
            if name in self._modules:
                raise ValueError(f'SparseSequential: duplicate module name {name!r}')
            self.add_module(name, module)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return SparseSequential(OrderedDict(list(self._modules.items())[idx]))
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f'SparseSequential: index {idx} out of range for {n} modules')
        return list(self._modules.values())[idx % n]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def add(self, module, name=None):
        name = str(len(self._modules)) if name is None else name
        if name in self._modules:
            raise ValueError(f'SparseSequential.add: name {name!r} exists')
        self.add_module(name, module)

    def forward(self, input):
        for module in self._modules.values():
            if isinstance(module, SparseModule):
                input = module(input)
            elif isinstance(input, SparseConvTensor):
                # As spconv: an empty tensor skips dense modules (BatchNorm1d cannot take 0 rows).
                if input.indices.shape[0] != 0:
                    input = input.replace_feature(module(input.features))
            else:
                input = module(input)
        return input


class ToDense(SparseModule):
    """SparseConvTensor -> dense (B, C, *spatial)."""

    def forward(self, x: SparseConvTensor) -> torch.Tensor:
        return x.dense()
