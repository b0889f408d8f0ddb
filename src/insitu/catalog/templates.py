"""Path templates: how an archive's directory and file names encode its facets.

A template has a directory part (one facet or literal per level) and a file-name part.
``{name}`` is a facet, ``{name:regex}`` a facet with its own pattern, ``[...]`` an optional
piece. Built-in templates follow the CMIP6 and CMIP5 Data Reference Syntax, and ``grib`` a
tree of GRIB files (``{product}/{variable}/{year}/{name}.grib2``: one dataset per
product and variable, whatever the years); sites add their own in the TOML settings
(``[catalog.templates.NAME]``).

Parsing is one compiled regular expression per template, so it runs at several hundred
thousand paths a second. A path that does not fit is reported with the reason, never
guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from insitu.errors import TemplateError

if TYPE_CHECKING:
    from insitu.settings import TemplateSettings

__all__ = ["BUILTIN_TEMPLATES", "ParsedPath", "Template", "get_template", "version_key"]

_FACET = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{\d*,?\d*\})+))?\}")
_DEFAULT_VALUE = r"[^/]+?"
_VERSION_VALUE = r"v?\d+(?:[._]\d+)*"
_DIGITS = re.compile(r"\d+")
_FIX = "move or rename the file to fit, or register its tree with a template that fits"


def version_key(version: str) -> str:
    """A string that sorts versions as versions: 'v2' < 'v10', '1.9' < '1.10'.

    Each run of digits is zero-padded to 12 places; a version without digits sorts first.
    """
    return ".".join(f"{int(n):012d}" for n in _DIGITS.findall(version))


@dataclass(frozen=True, slots=True)
class ParsedPath:
    """Facets read off one path, and the dataset the file belongs to."""

    facets: dict[str, str]
    dataset_id: str
    master_id: str
    version: str


@dataclass(frozen=True)
class Template:
    """A path template; see the module docstring for the syntax."""

    name: str
    directory: str
    filename: str
    dataset_facets: tuple[str, ...] | None = None
    version_facet: str | None = "version"
    aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, name: str, spec: TemplateSettings) -> Template:
        """Build and check a user-defined template from its settings entry."""
        tpl = cls(
            name=name,
            directory=spec.directory,
            filename=spec.filename,
            dataset_facets=tuple(spec.dataset_facets) if spec.dataset_facets else None,
            version_facet=spec.version_facet,
            aliases=dict(spec.aliases),
        )
        tpl.check()
        return tpl

    def check(self) -> None:
        """Raise :class:`TemplateError` if the template cannot work."""
        try:
            _ = self._regex
        except re.error as exc:
            raise TemplateError(
                f"Template {self.name!r} does not compile to a valid pattern ({exc}). "
                "Check the {facet:regex} parts and the brackets of optional pieces."
            ) from exc
        unknown = [f for f in self.id_facets if f not in self.directory_facets]
        if unknown:
            raise TemplateError(
                f"Template {self.name!r}: dataset_facets {unknown} are not directory facets "
                f"({', '.join(self.directory_facets)}). Use directory facets only."
            )
        if self.version_facet and self.version_facet not in self.directory_facets:
            raise TemplateError(
                f"Template {self.name!r}: version_facet {self.version_facet!r} is not a "
                "directory facet. Name one, or set version_facet to an empty value."
            )

    @cached_property
    def directory_facets(self) -> tuple[str, ...]:
        """Facets of the directory part, top down."""
        return tuple(m.group(1) for m in _FACET.finditer(self.directory))

    @cached_property
    def facets(self) -> tuple[str, ...]:
        """Every facet of the template, directory first, without repeats."""
        names = [*self.directory_facets, *(m.group(1) for m in _FACET.finditer(self.filename))]
        return tuple(dict.fromkeys(names))

    @cached_property
    def id_facets(self) -> tuple[str, ...]:
        """Facets whose values, joined by dots, are the dataset id."""
        return self.dataset_facets or self.directory_facets

    def resolve(self, name: str) -> str | None:
        """The template's own facet for ``name`` (itself or an alias), or None."""
        if name in self.facets:
            return name
        target = self.aliases.get(name)
        return target if target in self.facets else None

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        dir_re, file_re = self._patterns
        return re.compile(f"{dir_re}/{file_re}" if dir_re else file_re)

    @cached_property
    def _dir_regex(self) -> re.Pattern[str]:
        return re.compile(self._patterns[0])

    @cached_property
    def _patterns(self) -> tuple[str, str]:
        seen: dict[str, int] = {}

        def compile_part(part: str, default: str) -> str:
            out: list[str] = []
            pos = 0
            for m in _FACET.finditer(part):
                out.append(_literal(part[pos : m.start()]))
                name, pattern = m.group(1), m.group(2)
                if pattern is None:
                    pattern = _VERSION_VALUE if name == self.version_facet else default
                n = seen.get(name, 0)
                seen[name] = n + 1
                group = name if n == 0 else f"{name}__{n}"
                out.append(f"(?P<{group}>{pattern})")
                pos = m.end()
            out.append(_literal(part[pos:]))
            return "".join(out)

        levels = [p for p in self.directory.strip("/").split("/") if p]
        # Facet values never span a directory level.
        dir_re = "/".join(compile_part(p, r"[^/]+") for p in levels)
        file_re = compile_part(self.filename, _DEFAULT_VALUE)
        return dir_re, file_re

    @cached_property
    def _depth(self) -> int:
        return len([p for p in self.directory.strip("/").split("/") if p])

    def parse(self, relpath: str) -> ParsedPath | str:
        """Facets of ``relpath`` (relative to the collection root), or why it does not fit."""
        m = self._regex.fullmatch(relpath)
        if m is None:
            return self._explain(relpath)
        groups = m.groupdict()
        facets: dict[str, str] = {}
        for key, value in groups.items():
            if value is None:
                continue
            name, _, n = key.partition("__")
            if n:
                if facets.get(name) != value:
                    return (
                        f"file name says {name}={value!r} but the directory says "
                        f"{name}={facets.get(name)!r}; {_FIX}"
                    )
                continue
            facets[name] = value
        ids = [facets[f] for f in self.id_facets]
        version = facets.get(self.version_facet, "") if self.version_facet else ""
        master = [facets[f] for f in self.id_facets if f != self.version_facet]
        return ParsedPath(facets, ".".join(ids), ".".join(master), version)

    def _explain(self, relpath: str) -> str:
        depth = relpath.count("/")
        if depth != self._depth:
            return (
                f"path has {depth} directory levels below the root; template "
                f"{self.name!r} expects {self._depth} ({self.directory}); {_FIX}"
            )
        name = relpath.rsplit("/", 1)[-1]
        if self._depth and not self._dir_regex.fullmatch(relpath.rsplit("/", 1)[0]):
            return f"directories do not fit template {self.name!r} ({self.directory}); {_FIX}"
        return f"file name {name!r} does not fit template {self.name!r} ({self.filename}); {_FIX}"


def _literal(text: str) -> str:
    """Regex for a literal piece, where '[' and ']' bracket an optional group."""
    out = []
    for ch in text:
        if ch == "[":
            out.append("(?:")
        elif ch == "]":
            out.append(")?")
        else:
            out.append(re.escape(ch))
    return "".join(out)


_CMIP6_ALIASES = {
    "project": "mip_era",
    "activity": "activity_id",
    "mip": "activity_id",
    "institute": "institution_id",
    "institution": "institution_id",
    "model": "source_id",
    "source": "source_id",
    "experiment": "experiment_id",
    "ensemble": "member_id",
    "member": "member_id",
    "table": "table_id",
    "mip_table": "table_id",
    "variable": "variable_id",
    "grid": "grid_label",
}

_CMIP5_ALIASES = {
    "project": "activity",
    "institution_id": "institute",
    "institution": "institute",
    "source_id": "model",
    "experiment_id": "experiment",
    "frequency": "time_frequency",
    "realm": "modeling_realm",
    "table": "cmor_table",
    "table_id": "cmor_table",
    "mip_table": "cmor_table",
    "member": "ensemble",
    "member_id": "ensemble",
    "variable_id": "variable",
}

_TIME_RANGE = r"{time_range:\d+(?:-\d+)?(?:-clim)?}"

BUILTIN_TEMPLATES: dict[str, Template] = {
    "cmip6": Template(
        name="cmip6",
        directory="{mip_era}/{activity_id}/{institution_id}/{source_id}/{experiment_id}/"
        "{member_id}/{table_id}/{variable_id}/{grid_label}/{version}",
        filename="{variable_id:[^_/]+}_{table_id:[^_/]+}_{source_id:[^_/]+}_"
        "{experiment_id:[^_/]+}_{member_id:[^_/]+}_{grid_label:[^_/]+}"
        f"[_{_TIME_RANGE}].nc",
        aliases=_CMIP6_ALIASES,
    ),
    "cmip5": Template(
        name="cmip5",
        directory="{activity}/{product}/{institute}/{model}/{experiment}/{time_frequency}/"
        "{modeling_realm}/{cmor_table}/{ensemble}/{version}/{variable}",
        filename="{variable:[^_/]+}_{cmor_table:[^_/]+}_{model:[^_/]+}_{experiment:[^_/]+}_"
        f"{{ensemble:[^_/]+}}[_{_TIME_RANGE}].nc",
        dataset_facets=(
            "activity",
            "product",
            "institute",
            "model",
            "experiment",
            "time_frequency",
            "modeling_realm",
            "cmor_table",
            "ensemble",
            "version",
        ),
        aliases=_CMIP5_ALIASES,
    ),
    # GRIB downloads and model output (era5/t2m/2000/era5_t2m_200001.grib2): a directory
    # per product, variable and year. A dataset is one variable of one product (era5.t2m):
    # its years' files are one time series.
    "grib": Template(
        name="grib",
        directory="{product}/{variable}/{year:\\d{4}}",
        filename="{name}.{extension:grib2|grb2|grib|grb|grib1|grb1}",
        dataset_facets=("product", "variable"),
        version_facet=None,
    ),
    # Products of an ingest pipeline: one Zarr store (or NetCDF-4 file) per shot and
    # version (insitu.ingest); the format facet is the suffix.
    "shots": Template(
        name="shots",
        directory="{shot_id}/{version}",
        filename="{shot_id}_{version}.{format:zarr|nc}",
    ),
}


def get_template(name: str, custom: Mapping[str, TemplateSettings] | None = None) -> Template:
    """The built-in or user-defined template called ``name``."""
    if custom and name in custom:
        return Template.from_settings(name, custom[name])
    if name in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[name]
    known = sorted({*BUILTIN_TEMPLATES, *(custom or {})})
    raise TemplateError(
        f"Unknown path template {name!r}. Known templates: {', '.join(known)}. "
        f"Define it under [catalog.templates.{name}] in the settings file."
    )
