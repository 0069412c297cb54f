"""Rulebooks: for every kernel offset, which input row feeds which output row.

Sites are identified by linear int64 keys. SubM: sort the keys once, then find neighbours with
`torch.searchsorted` (one search per kernel row, half the kernel by symmetry). Strided convs:
compute every (site, offset) output key at once, then `torch.unique` gives the output sites and
each pair's output row. Work is vectorised over sites; python loops over kernel offsets only.
Offsets are numbered row-major over the kernel, i.e. in the order of the weight's
`[out, kz, ky, kx, in]` middle axes, so offset k uses `weight[:, k-th (kz, ky, kx), :]`.

Conventions (the dense reference the tests check against):
- SubM (submanifold): output sites = input sites; value = dense `conv3d(x, w, padding=dil*(k//2),
  dilation=dil)` read at the input sites, inactive sites counting as zero. Odd kernels only.
- strided/padded conv: output sites = every output position whose receptive field holds at least
  one active input; value = dense `conv3d(x, w, stride, padding, dilation)` there.
- inverse conv (same indice_key as a conv): output sites = that conv's input sites; value =
  dense `conv_transpose3d` with the conv's stride/padding/dilation read there.
"""
import math
from dataclasses import dataclass, field
from itertools import product
from typing import List, Optional, Sequence, Tuple

import torch


@dataclass
class Rulebook:
    kind: str                          # 'subm', 'conv' or 'inverse'
    kernel_size: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    in_indices: torch.Tensor           # (n_in, 1 + ndim) int32
    out_indices: torch.Tensor          # (n_out, 1 + ndim) int32
    in_spatial_shape: List[int]
    out_spatial_shape: List[int]
    pairs: List[Optional[Tuple[torch.Tensor, torch.Tensor]]]  # per offset (in rows, out rows) int64, or None
    identity_offset: int = -1          # SubM centre: out row i += in row i @ W_k, no gather
    _inverse: Optional['Rulebook'] = field(default=None, repr=False)

    @property
    def n_in(self) -> int:
        return self.in_indices.shape[0]

    @property
    def n_out(self) -> int:
        return self.out_indices.shape[0]

    @property
    def num_offsets(self) -> int:
        return len(self.pairs)

    @property
    def counts(self) -> List[int]:
        """Pairs per offset (the identity offset counts 0)."""
        return [0 if p is None else p[0].numel() for p in self.pairs]

    def offset_pairs(self):
        """Yield (k, in_rows, out_rows) for each offset with pairs (identity offset: (k, None, None))."""
        for k, p in enumerate(self.pairs):
            if k == self.identity_offset:
                yield k, None, None
            elif p is not None and p[0].numel():
                yield k, p[0], p[1]

    def inverted(self) -> 'Rulebook':
        """Rulebook of the inverse conv: same pairs and offsets with in and out swapped (cached)."""
        if self.kind != 'conv':
            raise ValueError(f'Rulebook.inverted: only a strided/padded conv rulebook can be inverted, '
                             f'this one is {self.kind!r}')
        if self._inverse is None:
            self._inverse = Rulebook(
                'inverse', self.kernel_size, self.stride, self.padding, self.dilation,
                self.out_indices, self.in_indices, self.out_spatial_shape, self.in_spatial_shape,
                [None if p is None else (p[1], p[0]) for p in self.pairs], -1)
        return self._inverse


def conv_output_shape(spatial_shape, kernel_size, stride, padding, dilation) -> List[int]:
    out = [(s + 2 * p - d * (k - 1) - 1) // st + 1
           for s, k, st, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation)]
    if any(o <= 0 for o in out):
        raise ValueError(f'sparse conv: spatial_shape {list(spatial_shape)} is too small for kernel '
                         f'{tuple(kernel_size)}, stride {tuple(stride)}, padding {tuple(padding)}, '
                         f'dilation {tuple(dilation)} (output shape {out})')
    return out


def _group_counts(sorted_groups: torch.Tensor, n_groups: int) -> List[int]:
    """Sizes of the runs of 0..n_groups-1 in an ascending index tensor."""
    edges = torch.searchsorted(sorted_groups, torch.arange(n_groups + 1, device=sorted_groups.device))
    return (edges[1:] - edges[:-1]).tolist()


def _sort_keys(key: torch.Tensor):
    """Sorted keys and the row of each (None when already sorted, as conv outputs are)."""
    if key.numel() < 2 or bool((key[1:] > key[:-1]).all()):
        return key, None
    return torch.sort(key)


def _neighbour_search(sorted_keys: torch.Tensor, row_delta: int, first_dx: int, dil_x: int, kx: int):
    """For every site (sorted order) and each of `kx` x-offsets, (found, position) of the neighbour
    at key + row_delta + first_dx + j * dil_x, j < kx.

    With dil_x == 1 the neighbours of one row are consecutive keys, so one binary search finds the
    first and the others are the next array slots (advance by one per hit): 1 search per kernel row
    instead of one per offset, and the queries are sorted, so the search walks memory in order."""
    n = sorted_keys.numel()
    out = []
    if dil_x == 1:
        query = sorted_keys + (row_delta + first_dx)
        pos = torch.searchsorted(sorted_keys, query)
        for j in range(kx):
            p = pos.clamp(max=n - 1)
            f = sorted_keys[p] == query
            out.append((f, p))
            if j + 1 < kx:
                pos = pos + f
                query = query + 1
    else:
        for j in range(kx):
            query = sorted_keys + (row_delta + first_dx + j * dil_x)
            p = torch.searchsorted(sorted_keys, query).clamp_(max=n - 1)
            out.append((sorted_keys[p] == query, p))
    return out


def build_subm_rulebook(indices: torch.Tensor, spatial_shape: Sequence[int], kernel_size: Sequence[int],
                        dilation: Sequence[int]) -> Rulebook:
    """Submanifold rulebook: output sites are the input sites."""
    if any(k % 2 == 0 for k in kernel_size):
        raise ValueError(f'SubMConv: kernel_size {tuple(kernel_size)} must be odd in every dim')
    ndim = len(spatial_shape)
    pad = [d * (k // 2) for k, d in zip(kernel_size, dilation)]
    # Keys live in a grid padded by the kernel reach, so key + delta never wraps into another
    # row/batch: a neighbour outside the grid lands in the padding, where no site exists.
    pshape = [s + 2 * p for s, p in zip(spatial_shape, pad)]
    idx = indices.long()
    key = idx[:, 0]
    for d in range(ndim):
        key = key * pshape[d] + (idx[:, d + 1] + pad[d])
    lin = [1] * ndim
    for d in range(ndim - 2, -1, -1):
        lin[d] = lin[d + 1] * pshape[d + 1]

    K = math.prod(kernel_size)
    centre = K // 2  # odd kernels: row-major index of the centre offset
    n = idx.shape[0]
    if n == 0 or centre == 0:
        return Rulebook('subm', tuple(kernel_size), (1,) * ndim, tuple(pad), tuple(dilation), indices, indices,
                        list(spatial_shape), list(spatial_shape), [None] * K, centre)

    sorted_keys, perm = _sort_keys(key)
    # Only offsets before the centre are searched: offset K-1-k mirrors k, its pairs are k's swapped.
    kx, dil_x = kernel_size[-1], dilation[-1]
    found, pos = [], []
    for row in product(*[range(k) for k in kernel_size[:-1]]):
        if len(found) >= centre:
            break
        row_delta = sum((row[d] - kernel_size[d] // 2) * dilation[d] * lin[d] for d in range(ndim - 1))
        for f, p in _neighbour_search(sorted_keys, row_delta, -(kx // 2) * dil_x, dil_x, kx):
            found.append(f)
            pos.append(p)
    pairs: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = [None] * K
    for k in range(centre):
        out_rows = found[k].nonzero().squeeze(1)            # sorted-site order
        in_rows = pos[k].index_select(0, out_rows)
        if perm is not None:
            out_rows, in_rows = perm.index_select(0, out_rows), perm.index_select(0, in_rows)
        pairs[k] = (in_rows, out_rows)
        pairs[K - 1 - k] = (out_rows, in_rows)
    return Rulebook('subm', tuple(kernel_size), (1,) * ndim, tuple(pad), tuple(dilation), indices, indices,
                    list(spatial_shape), list(spatial_shape), pairs, centre)


def build_conv_rulebook(indices: torch.Tensor, spatial_shape: Sequence[int], kernel_size: Sequence[int],
                        stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> Rulebook:
    """Regular (strided/padded) conv rulebook; output sites = positions reached by an active input."""
    ndim = len(spatial_shape)
    out_shape = conv_output_shape(spatial_shape, kernel_size, stride, padding, dilation)
    idx = indices.long()
    n = idx.shape[0]
    dev = idx.device
    if n == 0:
        return Rulebook('conv', tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), indices,
                        torch.zeros((0, ndim + 1), dtype=torch.int32, device=dev), list(spatial_shape), out_shape,
                        [None] * math.prod(kernel_size), -1)
    # Linear output key of (site, offset), laid out (K, n) so pairs come out grouped by offset.
    # Per dim, input coord c reaches output (c + pad - k*dil) / stride when that is an integer inside
    # the grid; otherwise the coord is replaced by -big, which makes the whole key negative.
    suffix = [1] * (ndim + 1)
    for d in range(ndim - 1, -1, -1):
        suffix[d] = suffix[d + 1] * out_shape[d]
    big = (int(idx[:, 0].max()) + 1) * suffix[0]
    key = (idx[:, 0] * suffix[0]).unsqueeze(0)
    coords = idx[:, 1:].to(torch.float64).t()              # exact small ints; float division vectorises
    for d in range(ndim):
        num = coords[d].unsqueeze(0) + float(padding[d]) - \
            (torch.arange(kernel_size[d], device=dev, dtype=torch.float64) * dilation[d]).unsqueeze(1)
        q = torch.floor(num / stride[d])
        ok = (q * stride[d] == num) & (num >= 0) & (q < out_shape[d])
        oc = torch.where(ok, q, -float(big)).long() * suffix[d + 1]
        key = (key.unsqueeze(1) + oc.unsqueeze(0)).reshape(-1, n)
    K = key.shape[0]
    flat = (key >= 0).view(-1).nonzero().squeeze(1)
    k_idx = torch.div(flat, n, rounding_mode='floor')
    in_rows = flat - k_idx * n
    out_keys, out_rows = torch.unique(key.view(-1).index_select(0, flat), sorted=True, return_inverse=True)
    counts = _group_counts(k_idx, K)
    cols = []
    rest = out_keys
    for d in range(ndim - 1, -1, -1):
        cols.append(rest % out_shape[d])
        rest = torch.div(rest, out_shape[d], rounding_mode='floor')
    cols.append(rest)
    out_indices = torch.stack(cols[::-1], 1).to(torch.int32)
    pairs, start = [], 0
    out_rows = out_rows.view(-1)
    for c in counts:
        pairs.append((in_rows[start:start + c], out_rows[start:start + c]) if c else None)
        start += c
    return Rulebook('conv', tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), indices,
                    out_indices, list(spatial_shape), out_shape, pairs, -1)
