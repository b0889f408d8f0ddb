"""Telling a truncated copy from a corrupt file.

A copy cut short is the most common bad file in an archive. Both formats record how long
the file should be (HDF5 in its superblock, classic NetCDF through the offsets in its
header), so the scan's reason can say "truncated" and by how much instead of "corrupt".
"""

from __future__ import annotations

import math
import os
import struct
from typing import BinaryIO

__all__ = ["HDF5_SIGNATURE", "truncation"]


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HDF5_SUPERBLOCK_MAX = 64  # bytes up to the end-of-file address, offsets of 8 bytes
_MASK32 = 0xFFFFFFFF


def truncation(path: str) -> str | None:
    """Why the file is truncated; "" if its header says it is complete; None if unknown."""
    size = 0
    what = "file"
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            magic = fh.read(8)
            fh.seek(0)
            if magic == HDF5_SIGNATURE:
                what = "HDF5 (NetCDF-4) file"
                needed = _hdf5_needed(fh.read(_HDF5_SUPERBLOCK_MAX))
            elif magic[:3] == b"CDF":
                what = "NetCDF classic file"
                needed = _classic_needed(fh, size)
            else:
                return None
    except EOFError:
        if what.startswith("HDF5"):
            return (
                f"truncated {what}: it ends inside its superblock ({size} bytes); "
                "re-copy it from its source"
            )
        return (
            f"truncated or corrupt {what}: its header runs past the end of the file "
            f"({size} bytes); re-copy it from its source"
        )
    except (OSError, ValueError, struct.error):
        return None
    if needed is None:
        return None
    if size < needed:
        return (
            f"truncated {what}: its header says {needed} bytes but the file has only "
            f"{size}; re-copy it from its source"
        )
    return ""


def _hdf5_needed(sb: bytes) -> int | None:
    """End-of-file address recorded in an HDF5 superblock at offset 0, if it is intact.

    ``sb`` holds the file's first bytes; ``EOFError`` if the file ends inside the superblock.
    """
    if len(sb) < 16:
        raise EOFError
    version = sb[8]
    if version in (0, 1):
        if sb[9:13] != b"\0\0\0\0" or sb[15] != 0:  # sub-format versions, reserved byte
            return None
        n = sb[13]
        start = 24 if version == 0 else 28  # base address
    elif version in (2, 3):
        n = sb[9]
        if n not in (2, 4, 8):
            return None
        if len(sb) < 16 + 4 * n:
            raise EOFError
        body, (stored,) = sb[: 12 + 4 * n], struct.unpack_from("<I", sb, 12 + 4 * n)
        if _lookup3(body) != stored:
            return None  # the superblock itself is damaged
        start = 12
    else:
        return None
    if n not in (2, 4, 8):
        return None
    if len(sb) < start + 3 * n:
        raise EOFError
    fmt = {2: "<H", 4: "<I", 8: "<Q"}[n]
    base = int(struct.unpack_from(fmt, sb, start)[0])
    eof = int(struct.unpack_from(fmt, sb, start + 2 * n)[0])
    if eof == (1 << (8 * n)) - 1:
        return None  # "undefined address"
    return base + eof


_LOOKUP3_MIX = tuple(zip(((0, 2, 1), (1, 0, 2), (2, 1, 0)) * 2, (4, 6, 8, 16, 19, 4), strict=True))
_LOOKUP3_FINAL = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata."""

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & _MASK32

    length = len(data)
    v = [(0xDEADBEEF + length + initval) & _MASK32] * 3  # a, b, c
    if length == 0:
        return v[2]
    tail = length - ((length - 1) // 12) * 12  # the last 1..12 bytes go to the final mix
    padded = data + b"\0" * (12 - tail)
    words = struct.unpack(f"<{len(padded) // 4}I", padded)
    for i in range(0, len(words), 3):
        v = [(v[j] + words[i + j]) & _MASK32 for j in range(3)]
        if i + 3 == len(words):
            break
        for (x, z, y), k in _LOOKUP3_MIX:
            v[x] = ((v[x] - v[z]) & _MASK32) ^ rot(v[z], k)
            v[z] = (v[z] + v[y]) & _MASK32
    for x, z, k in _LOOKUP3_FINAL:
        v[x] = ((v[x] ^ v[z]) - rot(v[z], k)) & _MASK32
    return v[2]


# Classic (CDF-1, CDF-2, CDF-5) header: sizes of the external types, by nc_type.
_NC_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 10, 11, 12
_STREAMING = (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


def _classic_needed(fh: BinaryIO, size: int) -> int | None:
    """Bytes a classic NetCDF file of ``size`` bytes must have, from its header's offsets.

    Raises ``EOFError`` when the header runs past the end of the file and ``ValueError``
    when it is not a classic header.
    """

    def read(n: int) -> bytes:
        data = fh.read(n)
        if len(data) < n:
            raise EOFError
        return data

    magic = read(4)
    version = magic[3]
    if magic[:3] != b"CDF" or version not in (1, 2, 5):
        raise ValueError("not a classic NetCDF header")
    big = version == 5  # CDF-5: 64-bit counts; CDF-2 and CDF-5: 64-bit offsets

    def count() -> int:
        return int(struct.unpack(">Q" if big else ">I", read(8 if big else 4))[0])

    def tag() -> int:
        return int(struct.unpack(">I", read(4))[0])

    def skip(n: int) -> None:
        n += -n % 4
        if fh.tell() + n > size:  # seek, not read: a corrupt count can be huge
            raise EOFError
        fh.seek(n, os.SEEK_CUR)

    def name() -> None:
        skip(count())

    def attributes() -> None:
        kind, n = tag(), count()
        if kind not in (0, _NC_ATTRIBUTE) or (kind == 0 and n):
            raise ValueError("bad attribute list")
        for _ in range(n):
            name()
            nc_type = tag()
            if nc_type not in _NC_TYPE_SIZE:
                raise ValueError(f"unknown type {nc_type}")
            skip(count() * _NC_TYPE_SIZE[nc_type])

    numrecs = count()
    kind, ndims = tag(), count()
    if kind not in (0, _NC_DIMENSION) or (kind == 0 and ndims):
        raise ValueError("bad dimension list")
    dims = []
    for _ in range(ndims):
        name()
        dims.append(count())
    attributes()
    kind, nvars = tag(), count()
    if kind not in (0, _NC_VARIABLE) or (kind == 0 and nvars):
        raise ValueError("bad variable list")
    fixed_end = 0
    records: list[tuple[int, int]] = []  # (begin, bytes per record) of record variables
    for _ in range(nvars):
        name()
        dimids = [count() for _ in range(count())]
        attributes()
        nc_type = tag()
        if nc_type not in _NC_TYPE_SIZE or any(d >= len(dims) for d in dimids):
            raise ValueError("bad variable")
        count() if big else read(4)  # vsize: recomputed below (it overflows in CDF-1/2)
        begin = int(
            struct.unpack(">Q" if version in (2, 5) else ">I", read(8 if version in (2, 5) else 4))[
                0
            ]
        )
        record = bool(dimids) and dims[dimids[0]] == 0
        nbytes = _NC_TYPE_SIZE[nc_type] * math.prod(dims[d] for d in dimids[record:])
        if record:
            records.append((begin, nbytes))
        else:
            fixed_end = max(fixed_end, begin + nbytes)
    if not records or numrecs in _STREAMING or numrecs == 0:
        return fixed_end
    # One record variable: records are not padded; several: each is padded to 4 bytes.
    recsize = records[0][1] if len(records) == 1 else sum(n + (-n % 4) for _, n in records)
    return max(fixed_end, *(b + (numrecs - 1) * recsize + n for b, n in records))
