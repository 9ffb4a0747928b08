"""Windows of feature rows by reference: ``[n, window, features]`` without materialising it.

A sequence model's input is, for each sample, the ``window`` scaled feature rows ending at
that sample's session. Materialised, a universe's samples are ``window`` times its feature
matrix (398 stocks x 1000 sessions x 60 rows x 60 features in float32 = 5.7 GB); the
matrix itself is 95 MB. :class:`WindowedRows` keeps the matrix once (every symbol's rows
stacked) and, per sample, the index of the window's LAST row: window ``i`` is
``rows[ends[i] - window + 1 : ends[i] + 1]``, never crossing into another symbol's rows.

It behaves like the 3-D array where the code needs one: ``shape``, ``len``, indexing with a
slice, a boolean mask or integer positions (a new view on the same matrix), and
``np.asarray`` (materialises, for ONNX Runtime and small batches). The LSTM moves ``rows``
to its device once and gathers each batch's windows there by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class WindowedRows:
    """``[n, window, F]`` windows of ``rows`` ``[N, F]`` ending at ``ends`` ``[n]``."""

    rows: np.ndarray
    ends: np.ndarray
    window: int

    def __post_init__(self) -> None:
        if self.rows.ndim != 2:
            raise ValueError(f"rows must be [N, features]; got shape {self.rows.shape}")
        ends = np.asarray(self.ends, dtype=np.int64)
        if len(ends) and (ends.min() < self.window - 1 or ends.max() >= len(self.rows)):
            raise ValueError("a window reaches outside the rows")
        object.__setattr__(self, "ends", ends)

    @classmethod
    def from_blocks(cls, blocks: Sequence[np.ndarray], window: int) -> WindowedRows:
        """Every full window of each block (one symbol's rows, sorted by date), blocks stacked.

        Block ``b`` of ``m`` rows gives ``m - window + 1`` windows, ending at its rows
        ``window - 1 .. m - 1``; a block shorter than ``window`` gives none.
        """
        offsets = np.cumsum([0, *(len(b) for b in blocks)])
        ends = [
            np.arange(lo + window - 1, hi, dtype=np.int64)
            for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)
        ]
        rows = np.concatenate(blocks) if blocks else np.empty((0, 0), np.float32)
        return cls(
            np.ascontiguousarray(rows, np.float32),
            np.concatenate(ends) if ends else np.empty(0, np.int64),
            window,
        )

    @classmethod
    def of(cls, x: np.ndarray | WindowedRows) -> WindowedRows:
        """``x`` itself, or a materialised ``[n, window, F]`` array as windows of its rows."""
        if isinstance(x, WindowedRows):
            return x
        arr = np.asarray(x, np.float32)
        if arr.ndim != 3:
            raise ValueError(f"windows must be [n, window, features]; got shape {arr.shape}")
        n, window, features = arr.shape
        # each sample's window laid out as its own block: window i ends at row i*window + w-1
        rows = np.ascontiguousarray(arr.reshape(n * window, features))
        return cls(rows, np.arange(n, dtype=np.int64) * window + window - 1, window)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.ends), self.window, int(self.rows.shape[1]))

    @property
    def ndim(self) -> int:
        return 3

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.rows.dtype

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, key: Any) -> WindowedRows:
        if isinstance(key, tuple):
            raise TypeError("WindowedRows is indexed along its samples only")
        ends = self.ends[key]
        return WindowedRows(self.rows, np.atleast_1d(ends), self.window)

    def offsets(self) -> np.ndarray:
        """``[window]`` row offsets of a window relative to its last row: ``-(w-1) .. 0``."""
        return np.arange(-self.window + 1, 1, dtype=np.int64)

    def last_rows(self) -> np.ndarray:
        """``[n, F]``: each window's last row (what a tabular model sees of the sample)."""
        return self.rows[self.ends]

    def gather(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Materialise the windows ``start:stop`` as a ``[m, window, F]`` array."""
        ends = self.ends[start:stop]
        return self.rows[ends[:, None] + self.offsets()]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.gather()
        return out if dtype is None else out.astype(dtype, copy=False)
