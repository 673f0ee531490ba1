"""Growable numpy columns: rows appended under the owner's lock, read by row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

_MIN_CAPACITY = 1024


class GrowableColumns:
    """Named columns of one length; capacity doubles when a row past it is written.

    A grown column is a new array: a reader that took a column before the growth keeps
    a consistent (older) array, so readers never see a half-copied column.
    """

    def __init__(self, specs: Mapping[str, tuple[npt.DTypeLike, tuple[int, ...]]]) -> None:
        self._specs = specs
        self._arrays: dict[str, npt.NDArray[Any]] = {
            name: np.zeros((0, *shape), dtype=dtype) for name, (dtype, shape) in specs.items()
        }
        self.size = 0

    def column(self, name: str) -> npt.NDArray[Any]:
        """The live rows of a column (a view)."""
        return self._arrays[name][: self.size]

    def reserve(self, size: int) -> None:
        """Make room for ``size`` rows (never shrinks)."""
        capacity = next(iter(self._arrays.values())).shape[0]
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, _MIN_CAPACITY)
        for name, (dtype, shape) in self._specs.items():
            grown = np.zeros((capacity, *shape), dtype=dtype)
            grown[: self.size] = self._arrays[name][: self.size]
            self._arrays[name] = grown

    def append(self, count: int) -> npt.NDArray[np.int64]:
        """Add ``count`` zeroed rows; their row numbers."""
        self.reserve(self.size + count)
        rows = np.arange(self.size, self.size + count, dtype=np.int64)
        self.size += count
        return rows

    def write(self, rows: npt.NDArray[np.int64] | int, **values: Any) -> None:
        for name, value in values.items():
            self._arrays[name][rows] = value
