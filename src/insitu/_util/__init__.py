"""Small helpers every subsystem may use; they know nothing of insitu's domain."""

from insitu._util.files import write_atomic
from insitu._util.gc import gc_paused
from insitu._util.lru import LRU

__all__ = ["LRU", "gc_paused", "write_atomic"]
