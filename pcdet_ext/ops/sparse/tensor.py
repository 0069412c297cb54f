"""SparseConvTensor: active sites of a voxel grid with one feature row each (spconv 2.x API)."""
from typing import Dict, List, Optional, Sequence

import torch


def _check_spatial_shape(spatial_shape, ndim: Optional[int] = None) -> List[int]:
    try:
        shape = [int(s) for s in spatial_shape]
    except (TypeError, ValueError):
        raise ValueError(f'SparseConvTensor: spatial_shape must be a sequence of ints, got {spatial_shape!r}')
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f'SparseConvTensor: spatial_shape {shape} has {len(shape)} dims, '
                         f'but indices have {ndim} spatial columns')
    if any(s <= 0 for s in shape):
        raise ValueError(f'SparseConvTensor: spatial_shape {shape} must be positive')
    return shape


class SparseConvTensor:
    """Sparse tensor: `features` (N, C) at `indices` (N, 1 + ndim) int32 rows `[b, z, y, x]`.

    Same attribute names as spconv 2.x (`features, indices, spatial_shape, batch_size,
    indice_dict`), so code written for `spconv.pytorch` runs unchanged. `indice_dict` maps an
    `indice_key` to the rulebook built by the conv that used it; tensors produced by a conv
    share the dict object with their input so later layers (SubM with the same key, inverse
    convs) can reuse it.
    """

    def __init__(self, features: torch.Tensor, indices: torch.Tensor, spatial_shape: Sequence[int],
                 batch_size: int, grid=None, voxel_num=None, indice_dict: Optional[Dict] = None,
                 benchmark: bool = False, _validate: bool = True):
        if _validate:
            self._validate(features, indices, spatial_shape, batch_size)
        self._features = features
        self.indices = indices
        self.spatial_shape = [int(s) for s in spatial_shape]
        self.batch_size = int(batch_size)
        self.indice_dict = {} if indice_dict is None else indice_dict
        self.grid = grid
        self.voxel_num = voxel_num
        self.benchmark = benchmark
        self.benchmark_record = {}

    @staticmethod
    def _validate(features, indices, spatial_shape, batch_size):
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            raise ValueError('SparseConvTensor: features must be a 2-D tensor (N, C), got '
                             f'{getattr(features, "shape", type(features))}')
        if not isinstance(indices, torch.Tensor) or indices.dim() != 2 or indices.shape[1] < 2:
            raise ValueError('SparseConvTensor: indices must be a 2-D tensor (N, 1 + ndim) '
                             f'[b, z, y, x], got {getattr(indices, "shape", type(indices))}')
        if indices.dtype.is_floating_point or indices.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise ValueError(f'SparseConvTensor: indices must be integer (int32), got {indices.dtype}')
        if indices.shape[0] != features.shape[0]:
            raise ValueError(f'SparseConvTensor: features has {features.shape[0]} rows but indices '
                             f'has {indices.shape[0]}')
        if indices.device != features.device:
            raise ValueError(f'SparseConvTensor: features on {features.device} but indices on {indices.device}')
        shape = _check_spatial_shape(spatial_shape, indices.shape[1] - 1)
        if int(batch_size) <= 0:
            raise ValueError(f'SparseConvTensor: batch_size must be positive, got {batch_size}')
        if indices.shape[0]:
            lo = indices.amin(0).tolist()
            hi = indices.amax(0).tolist()
            upper = [int(batch_size)] + shape
            for d, (a, b, u) in enumerate(zip(lo, hi, upper)):
                if a < 0 or b >= u:
                    name = 'batch index' if d == 0 else f'spatial index column {d}'
                    raise ValueError(f'SparseConvTensor: {name} out of range [0, {u}): min {a}, max {b}')

    @property
    def features(self) -> torch.Tensor:
        return self._features

    @features.setter
    def features(self, value: torch.Tensor):
        # spconv 2.x forbids direct assignment; we allow it but keep the row count honest.
        if value.shape[0] != self.indices.shape[0]:
            raise ValueError(f'SparseConvTensor.features: new features have {value.shape[0]} rows, '
                             f'indices have {self.indices.shape[0]}')
        self._features = value

    @property
    def spatial_size(self) -> int:
        n = 1
        for s in self.spatial_shape:
            n *= s
        return n

    @property
    def ndim(self) -> int:
        return len(self.spatial_shape)

    def replace_feature(self, feature: torch.Tensor) -> 'SparseConvTensor':
        """New tensor with `feature` at the same sites (shares indices and the rulebook dict)."""
        if feature.shape[0] != self.indices.shape[0]:
            raise ValueError(f'SparseConvTensor.replace_feature: feature has {feature.shape[0]} rows, '
                             f'indices have {self.indices.shape[0]}')
        new = self.shadow_copy()
        new._features = feature
        return new

    def shadow_copy(self) -> 'SparseConvTensor':
        new = SparseConvTensor(self._features, self.indices, self.spatial_shape, self.batch_size,
                               self.grid, self.voxel_num, self.indice_dict, self.benchmark,
                               _validate=False)
        new.benchmark_record = self.benchmark_record
        return new

    def find_indice_pair(self, key):
        if key is None:
            return None
        return self.indice_dict.get(key)

    def linear_keys(self) -> torch.Tensor:
        """int64 row-major index of each site in the (batch, *spatial_shape) grid."""
        idx = self.indices.long()
        key = idx[:, 0]
        for d, s in enumerate(self.spatial_shape):
            key = key * s + idx[:, d + 1]
        return key

    def dense(self, channels_first: bool = True) -> torch.Tensor:
        """Dense (B, C, *spatial) tensor (or (B, *spatial, C)); inactive sites are zero. Differentiable."""
        c = self._features.shape[1]
        flat = self._features.new_zeros((self.batch_size * self.spatial_size, c))
        flat = flat.index_copy(0, self.linear_keys(), self._features)
        out = flat.view(self.batch_size, *self.spatial_shape, c)
        if channels_first:
            out = out.permute(0, out.dim() - 1, *range(1, out.dim() - 1)).contiguous()
        return out

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> 'SparseConvTensor':
        """From a channels-last dense tensor (B, *spatial, C): every site with a non-zero feature is active."""
        if x.dim() < 3:
            raise ValueError(f'SparseConvTensor.from_dense: expected (B, *spatial, C), got {tuple(x.shape)}')
        spatial = list(x.shape[1:-1])
        mask = (x != 0).any(-1)
        indices = mask.nonzero().int()
        features = x[mask]
        return cls(features, indices, spatial, x.shape[0])

    def __repr__(self):
        return (f'SparseConvTensor(features={tuple(self._features.shape)}, spatial_shape={self.spatial_shape}, '
                f'batch_size={self.batch_size}, indice_keys={list(self.indice_dict)})')
