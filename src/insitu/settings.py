"""The one settings object, read from init kwargs, ``INSITU_*`` variables and one TOML file.

Priority, highest first: keyword arguments, environment variables (nested keys with
``__``, e.g. ``INSITU_CATALOG__URI``), the TOML file, defaults. The TOML file is
``$INSITU_CONFIG`` if set, else ``~/.config/insitu/insitu.toml`` if it exists.

Build it once at an entry point with :meth:`Settings.load` and pass it down.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from insitu.errors import ConfigError

__all__ = ["CatalogSettings", "Settings", "TemplateSettings", "default_config_file"]

_toml_file: ContextVar[Path | None] = ContextVar("_toml_file", default=None)


def default_config_file() -> Path:
    """The TOML file read when none is named: ``$INSITU_CONFIG`` or the user's config dir."""
    env = os.environ.get("INSITU_CONFIG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser()
    return base / "insitu" / "insitu.toml"


def _default_data_dir() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser()
    return base / "insitu"


class TemplateSettings(BaseModel):
    """A user-defined path template (see ``insitu.catalog.templates``)."""

    model_config = ConfigDict(extra="forbid")

    directory: str = Field(
        description="Directory part, e.g. '{project}/{model}/{experiment}/{variable}/{version}'."
    )
    filename: str = Field(
        description="File-name part; '[...]' marks an optional piece, e.g. "
        "'{variable}_{model}_{experiment}[_{time_range}].nc'."
    )
    dataset_facets: list[str] | None = Field(
        default=None,
        description="Facets whose values, joined by dots, form the dataset id "
        "(default: every directory facet).",
    )
    version_facet: str | None = Field(
        default="version", description="Facet holding the dataset version, if any."
    )
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Extra names accepted in searches: alias -> facet."
    )


class CatalogSettings(BaseModel):
    """Settings of the catalog subsystem."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalog store; default: a SQLite file "
        "'catalog.db' in the data directory. PostgreSQL: 'postgresql+psycopg://user@host/db'.",
    )
    scan_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Processes that read file headers during a scan.",
    )
    templates: dict[str, TemplateSettings] = Field(
        default_factory=dict, description="User-defined path templates by name."
    )


class Settings(BaseSettings):
    """All of insitu's settings."""

    model_config = SettingsConfigDict(
        env_prefix="INSITU_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where insitu keeps its own state (catalog database, caches).",
    )
    log_level: str = Field(default="WARNING", description="Logging level of the entry points.")
    catalog: CatalogSettings = Field(
        default_factory=CatalogSettings, description="Catalog settings."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_file.get()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Settings:
        """Build the settings; raise :class:`ConfigError` naming the bad key and its source."""
        path = Path(config_file).expanduser() if config_file else default_config_file()
        if config_file and not path.is_file():
            raise ConfigError(f"Config file {path} does not exist. Create it or drop --config.")
        token = _toml_file.set(path if path.is_file() else None)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            where = (
                f"{path} or INSITU_* environment variables"
                if path.is_file()
                else ("INSITU_* environment variables or arguments")
            )
            lines = [
                f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in exc.errors()
            ]
            raise ConfigError(
                "Invalid settings in "
                + where
                + ":\n"
                + "\n".join(lines)
                + "\nFix these keys (nested env vars use '__', e.g. INSITU_CATALOG__URI)."
            ) from exc
        except Exception as exc:  # a TOML syntax error surfaces here
            if path.is_file():
                raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
            raise
        finally:
            _toml_file.reset(token)

    @property
    def catalog_uri(self) -> str:
        """The catalog store URL, with the SQLite default resolved."""
        if self.catalog.uri:
            return self.catalog.uri
        return f"sqlite:///{self.data_dir / 'catalog.db'}"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with passwords in URLs replaced by '***'."""
        data = self.model_dump(mode="json")
        uri = data["catalog"].get("uri")
        if uri and "@" in uri and ":" in uri.split("@", 1)[0].split("//", 1)[-1]:
            scheme, rest = uri.split("//", 1)
            creds, host = rest.split("@", 1)
            data["catalog"]["uri"] = f"{scheme}//{creds.split(':', 1)[0]}:***@{host}"
        return data
