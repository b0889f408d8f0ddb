from collections.abc import Sequence
from typing import Any

from numpy import ndarray
from typing_extensions import Buffer

_Bytes = Buffer | ndarray[Any, Any]

def unshuffle(src: _Bytes, dest: _Bytes, itemsize: int, /) -> None: ...
def unshuffle_sum(
    chunks: Sequence[_Bytes], dest: _Bytes, itemsize: int, total: _Bytes, /
) -> None: ...
def unshuffle_rows(
    chunks: Sequence[_Bytes], dest: _Bytes, itemsize: int, rows: _Bytes, /
) -> None: ...
