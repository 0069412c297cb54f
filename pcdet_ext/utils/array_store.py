"""ArrayStore: an append-only store of numpy arrays, in memory or spilled to one file on disk.

Datasets that pre-compute many small per-object arrays (ALPI's candidate points, proxy frustums)
would otherwise hold them all in RAM (0.6-2.5 GB for a KITTI-size ALPI split, docs/benchmarks.md).
In 'disk' mode every array is appended to one temporary file and only (offset, dtype, shape) stays
in memory; `get` reads it back with `os.pread`, which needs no shared file position, so
DataLoader workers forked after the build read the same file safely.
"""
from __future__ import annotations

import os
import tempfile
from typing import List, Optional, Tuple

import numpy as np

MODES = ('memory', 'disk')


class ArrayStore:

    def __init__(self, mode: str = 'memory', directory: Optional[str] = None, prefix: str = 'pcdet_ext_store_'):
        if mode not in MODES:
            raise ValueError(f'ArrayStore: mode must be one of {MODES}, got {mode!r}')
        self.mode = mode
        self._arrays: List[np.ndarray] = []
        self._meta: List[Tuple[int, np.dtype, tuple]] = []
        self._fd = None
        self.nbytes = 0
        if mode == 'disk':
            if directory is not None:
                os.makedirs(directory, exist_ok=True)
            self._fd, path = tempfile.mkstemp(prefix=prefix, suffix='.bin', dir=directory)
            # unlinked at once: the space is freed when the last process (workers too) closes it,
            # and a killed run leaves no stray file behind
            os.unlink(path)

    def __len__(self) -> int:
        return len(self._arrays) if self.mode == 'memory' else len(self._meta)

    def put(self, arr: np.ndarray) -> int:
        """Store a copy of `arr`; returns its reference (an int)."""
        if self.mode == 'memory':
            arr = np.array(arr, order='C', copy=True)  # one copy, contiguous
            self.nbytes += arr.nbytes
            self._arrays.append(arr)
            return len(self._arrays) - 1
        arr = np.ascontiguousarray(arr)
        self.nbytes += arr.nbytes
        offset = os.lseek(self._fd, 0, os.SEEK_END)
        data = arr.tobytes()
        written = 0
        while written < len(data):
            written += os.write(self._fd, data[written:])
        self._meta.append((offset, arr.dtype, arr.shape))
        return len(self._meta) - 1

    def get(self, ref: int) -> np.ndarray:
        if self.mode == 'memory':
            return self._arrays[ref]
        offset, dtype, shape = self._meta[ref]
        out = np.empty(shape, dtype=dtype)
        got = os.preadv(self._fd, [out.reshape(-1).view(np.uint8)], offset)  # read straight into `out`
        if got != out.nbytes:
            raise IOError(f'ArrayStore: short read of entry {ref} ({got} of {out.nbytes} bytes); was the '
                          f'store file truncated?')
        return out

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        # pickling (spawned workers) carries the arrays, read back once, never the descriptor
        state = dict(self.__dict__)
        if self.mode == 'disk':
            state['_arrays'] = [self.get(i) for i in range(len(self._meta))]
            state['_meta'], state['_fd'], state['mode'] = [], None, 'memory'
        return state
