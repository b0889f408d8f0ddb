"""What a reader's ``header`` gives: a file's variables, dimensions and attributes as plain
values, before the catalog's scan describes them.

Attribute values are JSON-ready (numbers, strings, lists), as netCDF4-python returns them
once converted by :func:`jsonable`, whatever the format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Header", "HeaderVariable", "jsonable"]


@dataclass(slots=True)
class HeaderVariable:
    """One variable: what the catalog records, and how to read its raw values.

    ``read`` returns the stored values, without masking or scaling, in the variable's
    ``shape``; it is only called for the time axis and the latitude/longitude coordinates.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict[str, Any]
    read: Callable[[], np.ndarray[Any, Any]]

    @property
    def size(self) -> int:
        """Number of values."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(slots=True)
class Header:
    """A file's header: data model, dimensions (in netCDF's order), variables, attributes,
    all of the root group; ``groups`` names the root group's subgroups, if any."""

    data_model: str
    dims: dict[str, int]
    variables: list[HeaderVariable]
    global_attrs: dict[str, Any]
    groups: tuple[str, ...] = ()


def jsonable(value: Any) -> Any:
    """A netCDF attribute value as JSON-ready Python values."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
