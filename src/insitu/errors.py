"""Every error insitu raises on purpose.

Each message says what went wrong, names the value, and says what to do next.
Builtins are second parents so callers can catch ``LookupError`` or ``ValueError``.

::

    InsituError
    ├── ConfigError
    ├── NotFound (LookupError)                      404
    │   ├── CollectionNotFound
    │   └── DatasetNotFound
    ├── Conflict                                    409
    │   └── CollectionExists
    ├── InvalidRequest (ValueError)                 400
    │   ├── InvalidQuery
    │   ├── TemplateError
    │   └── TooLarge                                413
    ├── Unauthorized (PermissionError)              401
    ├── Forbidden (PermissionError)                 403
    ├── StoreError                                  503
    ├── BackendUnavailable                          503
    ├── ServiceBusy                                 503
    │   └── TooManyJobs                             429
    ├── ComputeError                                500
    │   └── IncompatibleInputs (ValueError)         422
    └── DataError (OSError)                         500
        ├── IncompleteFile
        └── IngestError (a code: E_FORMAT, E_SCHEMA, ...)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BackendUnavailable",
    "CollectionExists",
    "CollectionNotFound",
    "ComputeError",
    "ConfigError",
    "Conflict",
    "DataError",
    "DatasetNotFound",
    "Forbidden",
    "IncompatibleInputs",
    "IncompleteFile",
    "IngestError",
    "InsituError",
    "InvalidQuery",
    "InvalidRequest",
    "NotFound",
    "ScanInProgress",
    "ServiceBusy",
    "StorageFull",
    "StoreError",
    "TemplateError",
    "TooLarge",
    "TooManyJobs",
    "Unauthorized",
]


class InsituError(Exception):
    """Base of every error raised on purpose. Message: what, which, what to do."""

    http_status: ClassVar[int] = 500


class ConfigError(InsituError):
    """The settings are invalid: the message names the key, its source and the expected form."""


class NotFound(InsituError, LookupError):
    """Something asked for by name does not exist."""

    http_status = 404


class CollectionNotFound(NotFound):
    """No collection of that name is registered."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" Known collections: {', '.join(known)}." if known else ""
        super().__init__(
            f"Collection {name!r} is not registered.{hint} "
            f"Run 'insitu catalog add {name} ROOT --template cmip6' to register it, "
            "or 'insitu catalog list' to see what exists."
        )
        self.name = name


class DatasetNotFound(NotFound):
    """No dataset with that id is in the catalog."""

    def __init__(self, dataset_id: str) -> None:
        super().__init__(
            f"Dataset {dataset_id!r} is not in the catalog. "
            "Run 'insitu catalog search' with a few of its facets to find its exact id, "
            "or rescan the collection if the files were added recently."
        )
        self.dataset_id = dataset_id


class Conflict(InsituError):
    """The request clashes with what already exists."""

    http_status = 409


class CollectionExists(Conflict):
    """A collection of that name is already registered."""

    def __init__(self, name: str, root: str) -> None:
        super().__init__(
            f"Collection {name!r} is already registered (root {root}). "
            f"Choose another name, or run 'insitu catalog remove {name}' first."
        )
        self.name = name


class InvalidRequest(InsituError, ValueError):
    """A parameter has the wrong form or value."""

    http_status = 400


class InvalidQuery(InvalidRequest):
    """A search or open request cannot be understood."""


class TemplateError(InvalidRequest):
    """A path template is unknown or malformed."""


class TooLarge(InvalidRequest):
    """A request asks for more data than one answer may carry."""

    http_status = 413


class Unauthorized(InsituError, PermissionError):
    """The request carries no valid token and the resource is not public."""

    http_status = 401


class Forbidden(InsituError, PermissionError):
    """The request's token is valid but not granted what it asks for."""

    http_status = 403


class StoreError(InsituError):
    """The catalog store cannot be reached or used."""

    http_status = 503


class BackendUnavailable(InsituError):
    """A cluster backend cannot be used: its package is missing or its cluster will not start."""

    http_status = 503


class ServiceBusy(InsituError):
    """The service has as much work queued as it accepts; the request may be sent again later."""

    http_status = 503


class TooManyJobs(ServiceBusy):
    """The caller already has as many jobs queued or running as one caller may."""

    http_status = 429


class ComputeError(InsituError):
    """An analysis could not be completed."""


class IncompatibleInputs(ComputeError, ValueError):
    """The inputs of an operation do not fit it or each other (dimensions, grids, calendars)."""

    http_status = 422


class DataError(InsituError, OSError):
    """A data file cannot be read as the catalog says it should."""


class IncompleteFile(DataError):
    """A file ends before its own structure says it should (truncated, or still being
    written): its reader would otherwise give fewer values without a word."""


class IngestError(DataError):
    """A raw file cannot become a product. ``code`` names the case (``E_FORMAT``,
    ``E_INCOMPLETE``, ``E_SCHEMA``, ``E_UNITS``, ``E_CAL_MISSING``, ``E_CAL_AMBIGUOUS``,
    ``E_CONFIG_MISSING``, ``E_UNMAPPED_CHANNEL``, ``E_DUPLICATE_CONFLICT``), ``stage`` the
    pipeline stage that found it and ``action`` what an operator does about it."""

    def __init__(self, code: str, stage: str, message: str, action: str) -> None:
        super().__init__(f"{code} at {stage}: {message} {action}")
        self.code = code
        self.stage = stage
        self.detail = message
        self.action = action


class StorageFull(InsituError, OSError):
    """A result or cache entry could not be written: its filesystem is full (nothing partial
    is left behind)."""

    http_status = 507


class ScanInProgress(Conflict):
    """A collection is being scanned by another process."""

    def __init__(self, collection: str, holder: str) -> None:
        super().__init__(
            f"Collection {collection!r} is being scanned by {holder}. Wait for that scan to "
            f"finish (its result is what this one would give), then run 'insitu catalog scan "
            f"{collection}' again if files changed since."
        )
        self.collection = collection
