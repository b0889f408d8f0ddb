"""NetCDF: netCDF-4 (HDF5) and classic files, their fast header, layout and direct reads."""

from insitu.formats.netcdf.readers import NetCDF3Reader, NetCDF4Reader

__all__ = ["NetCDF3Reader", "NetCDF4Reader"]
