"""Formats: bytes to arrays. One reader interface, one implementation per file format, the
CF rules, the open-file cache and the one HDF5 lock. Knows nothing of the other subsystems.

Read a file through :func:`reader_for` (its header; a variable's raw values by index), or
through :func:`read` and :func:`read_slabs`, which take the direct chunk path wherever the
reader has one and the layout allows.
"""

from insitu.formats.cache import OpenFiles, WouldBlock
from insitu.formats.cf import (
    FILL_ATTRS,
    Axes,
    TimeAxis,
    axes,
    decode_times,
    default_fill,
    fill_values,
    mask_default_fill,
    reencode_time,
    time_axis,
    with_time_units,
)
from insitu.formats.channels import Channel, ChannelFile, ChannelReader
from insitu.formats.csv import CsvDialect, CsvReader
from insitu.formats.files import READERS, read, read_slabs, reader_for
from insitu.formats.grib import GRIB_SIGNATURE, GribReader
from insitu.formats.header import Header, HeaderVariable, jsonable
from insitu.formats.lock import HDF5_LOCK
from insitu.formats.netcdf import NetCDF3Reader, NetCDF4Reader
from insitu.formats.netcdf.direct import chunks_read, record_sum, row_sums
from insitu.formats.netcdf.truncation import HDF5_SIGNATURE, truncation
from insitu.formats.reader import (
    DirectVariable,
    Encoded,
    EncodedVariable,
    FormatReader,
    Index,
    NotDirect,
    Slab,
    StoredChunk,
    SupportsDirectChunks,
    SupportsFusedRowSums,
    SupportsFusedSums,
    SupportsKeepOpen,
    SupportsStoredChunks,
)
from insitu.formats.tdms import TDMS_SIGNATURE, TdmsReader
from insitu.formats.zarr import (
    ZARR_SUFFIX,
    DatasetStat,
    ZarrArrayWriter,
    ZarrReader,
    ZarrWriter,
    is_zarr_store,
    stat_dataset,
)

__all__ = [
    "FILL_ATTRS",
    "GRIB_SIGNATURE",
    "HDF5_LOCK",
    "HDF5_SIGNATURE",
    "READERS",
    "TDMS_SIGNATURE",
    "ZARR_SUFFIX",
    "Axes",
    "Channel",
    "ChannelFile",
    "ChannelReader",
    "CsvDialect",
    "CsvReader",
    "DatasetStat",
    "DirectVariable",
    "Encoded",
    "EncodedVariable",
    "FormatReader",
    "GribReader",
    "Header",
    "HeaderVariable",
    "Index",
    "NetCDF3Reader",
    "NetCDF4Reader",
    "NotDirect",
    "OpenFiles",
    "Slab",
    "StoredChunk",
    "SupportsDirectChunks",
    "SupportsFusedRowSums",
    "SupportsFusedSums",
    "SupportsKeepOpen",
    "SupportsStoredChunks",
    "TdmsReader",
    "TimeAxis",
    "WouldBlock",
    "ZarrArrayWriter",
    "ZarrReader",
    "ZarrWriter",
    "axes",
    "chunks_read",
    "decode_times",
    "default_fill",
    "fill_values",
    "is_zarr_store",
    "jsonable",
    "mask_default_fill",
    "read",
    "read_slabs",
    "reader_for",
    "record_sum",
    "reencode_time",
    "row_sums",
    "stat_dataset",
    "time_axis",
    "truncation",
    "with_time_units",
]
