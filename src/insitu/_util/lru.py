"""A small thread-safe least-recently-used cache, bounded in entries and optionally in size.

The catalog, the data service's snapshot, its Zarr views and its quicklook images all keep
recent answers this way; each says what an entry is and how much it may hold.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``max_items`` entries and, with ``size_of``, at most ``max_size`` of their
    total size; the least recently used go first. A value bigger than ``max_size`` is not
    kept. Reading an entry makes it the most recently used."""

    def __init__(
        self,
        max_items: int,
        max_size: int | None = None,
        size_of: Callable[[V], int] | None = None,
    ) -> None:
        self.max_items, self.max_size = max_items, max_size
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value under ``key``, or None."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            self._items.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, letting the oldest entries go beyond the bounds."""
        size = self._size_of(value) if self._size_of is not None else 0
        if self.max_size is not None and size > self.max_size:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._size += size - (old[1] if old else 0)
            self._items[key] = (value, size)
            while len(self._items) > self.max_items or (
                self.max_size is not None and self._size > self.max_size
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._items)
