"""Load the shipped JSON Schemas, validate documents against them, and say where each document is wrong.

Schemas are package data (``schemas/<name>.schema.json``), read through ``importlib.resources`` so they
work from a wheel or a zip as well as from a checkout. All of them sit in one ``referencing`` registry
keyed by ``$id`` (``https://rcc-registry.example/schemas/<name>/<major>``) and ``$ref`` each other by
relative URI (``../vocabulary/1#/$defs/dataset``); nothing is ever fetched from the network, so an
unknown ``$ref`` fails loudly instead of reaching out.

Each schema carries ``x-version`` (``major.minor.patch``), a keyword validators ignore; its major is the
last segment of ``$id``. A change a published document could fail against bumps the major and the
``$id``; tightened wording or a new optional field bumps the minor.

Errors are :class:`SchemaError` values: an RFC 6901 pointer and a message that describes the rule, never
the submitted value, so an error list is safe to return, log and audit even when the document held
search criteria. Missing and unexpected members are reported at their own pointer (``/grants/0/datasets``,
``/name``) rather than at the object that holds them, as FastAPI reports its own validation errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urldefrag, urljoin

from referencing import Registry
from referencing.jsonschema import DRAFT202012

from schemas.checks import FORMAT_CHECKER, RccValidator, ecma_regex

BASE_URI = "https://rcc-registry.example/schemas/"
_SUFFIX = ".schema.json"
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
_MAX_ENUM_LISTED = 20
# Keyword positions that hold subschemas (2020-12 applicators); ``$defs`` is left out on purpose, see _inline.
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_VALUES = frozenset(
    {
        "items",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "additionalProperties",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)

Segment = str | int


class UnknownSchemaError(LookupError):
    """No schema of that name ships with the package (``name`` may be user input, e.g. from a URL)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schema named {name[:100]!r}")


@dataclass(frozen=True)
class SchemaError:
    """One way a document breaks its schema: where (RFC 6901 pointer, ``""`` for the root) and which rule."""

    path: str
    message: str


class SchemaValidator(Protocol):
    """The part of a ``jsonschema`` validator callers need (the library ships no type information)."""

    schema: Mapping[str, Any]

    def is_valid(self, instance: object) -> bool: ...

    def iter_errors(self, instance: object) -> Iterator[Any]: ...


@cache
def _names() -> tuple[str, ...]:
    files = resources.files("schemas")
    return tuple(
        sorted(
            entry.name.removesuffix(_SUFFIX)
            for entry in files.iterdir()
            if entry.name.endswith(_SUFFIX) and entry.is_file()
        )
    )


def names() -> list[str]:
    """Every shipped schema, sorted; includes the ``common`` and ``vocabulary`` ``$defs`` libraries."""
    return list(_names())


@cache
def _text(name: str) -> str:
    if name not in _names():
        raise UnknownSchemaError(name)
    return resources.files("schemas").joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def load(name: str) -> dict[str, Any]:
    """The schema as a fresh dict (the caller may change it freely); ``UnknownSchemaError`` if none."""
    schema: dict[str, Any] = json.loads(_text(name))
    return schema


@cache
def version(name: str) -> str:
    """The schema's ``x-version``, to record beside every document validated against it."""
    return str(load(name)["x-version"])


@cache
def _registry() -> Registry[Any]:
    resources_by_id = [(schema["$id"], DRAFT202012.create_resource(schema)) for schema in map(load, _names())]
    return Registry().with_resources(resources_by_id).crawl()


def validator(name: str) -> SchemaValidator:
    """The cached draft 2020-12 validator for ``name``, with format checks and cross-schema ``$ref``s.

    Built on first use and kept (the first call also builds the shared registry); validating is cheap.
    """
    _text(name)  # raise UnknownSchemaError before anything is cached
    return _validator(name)


@cache
def _validator(name: str) -> SchemaValidator:
    schema = load(name)
    inlined = _inline(schema, schema["$id"], _registry())
    built: SchemaValidator = RccValidator(inlined, registry=_registry(), format_checker=FORMAT_CHECKER)
    return built


def _inline(schema: Any, base: str, registry: Registry[Any], seen: tuple[str, ...] = ()) -> Any:
    """A copy of ``schema`` with each ``$ref`` replaced by the subschema it points at.

    Resolving references at validation time (URI joins and registry lookups) was about 80% of the cost
    of validating a search request (1.3 ms); inlining them once makes validation several times cheaper. A
    ``$ref`` with sibling keywords becomes an ``allOf`` member, which keeps the same meaning and error paths.
    A recursive ``$ref`` is left in place for the registry to resolve, and ``$defs`` are kept as they are,
    so nothing a reference could still need goes missing.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA_MAPS:
            out[keyword] = {key: _inline(child, base, registry, seen) for key, child in value.items()}
        elif keyword in _SUBSCHEMA_LISTS:
            out[keyword] = [_inline(child, base, registry, seen) for child in value]
        elif keyword in _SUBSCHEMA_VALUES:
            out[keyword] = _inline(value, base, registry, seen)
        else:
            out[keyword] = value
    ref = out.get("$ref")
    target = urljoin(base, ref) if isinstance(ref, str) else None
    if target is None or target in seen:
        return out
    resolved = registry.resolver().lookup(target).contents
    target_inlined = _inline(resolved, urldefrag(target).url, registry, (*seen, target))
    if isinstance(target_inlined, dict):
        # Inside the document its dialect is the root's. A nested "$schema" would make jsonschema validate the
        # subschema with the stock validator for that dialect, without this package's decimal multipleOf and
        # ECMA patterns: 1234.57 in a vacancy inside a search response was refused as no multiple of 0.01.
        target_inlined.pop("$schema", None)
    del out["$ref"]
    if not out:
        return target_inlined
    out["allOf"] = [*out.get("allOf", []), target_inlined]
    return out


def validate(name: str, instance: object) -> list[SchemaError]:
    """Every way ``instance`` (parsed JSON) breaks schema ``name``; empty when it is valid.

    Sorted by path (array indices numerically) then message, without duplicates, so the same document
    always gives the same list.
    """
    found = {(path, message) for error in validator(name).iter_errors(instance) for path, message in _explain(error)}
    return [SchemaError(_pointer(path), message) for path, message in sorted(found, key=_order)]


def _explain(error: Any) -> Iterator[tuple[tuple[Segment, ...], str]]:
    """Turn one ``jsonschema`` error into (path, message) pairs, pointing at members where there are any."""
    path: tuple[Segment, ...] = tuple(error.absolute_path)
    keyword: str | None = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema if isinstance(error.schema, dict) else {}
    custom: str | None = schema.get("x-messages", {}).get(keyword)
    if keyword == "additionalProperties" and isinstance(instance, dict):
        for member in _unexpected(instance, schema):
            yield (*path, member), custom or "is not allowed"
    elif keyword == "required" and isinstance(instance, dict):
        for member in value:
            if member not in instance:
                yield (*path, member), custom or "is required"
    elif keyword == "not" and isinstance(instance, dict) and (forbidden := _forbidden_member(value)) is not None:
        yield (*path, forbidden), custom or "is not allowed here"
    else:
        yield path, custom or _describe(keyword, value, error)


def _unexpected(instance: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    known = schema.get("properties", {})
    patterns = [ecma_regex(pattern) for pattern in schema.get("patternProperties", {})]
    return [
        member for member in instance if member not in known and not any(pattern.search(member) for pattern in patterns)
    ]


def _forbidden_member(not_schema: Any) -> str | None:
    """``{"not": {"required": ["x"]}}`` is how a schema forbids member ``x``: report it at ``x``."""
    if isinstance(not_schema, dict) and not_schema.keys() == {"required"} and len(not_schema["required"]) == 1:
        member: str = not_schema["required"][0]
        return member
    return None


def _describe(keyword: str | None, value: Any, error: Any) -> str:
    """The rule, in words, from the schema side only: the instance is never quoted."""
    match keyword:
        case "type":
            return "must be " + " or ".join(
                _TYPE_NAMES.get(t, t) for t in ([value] if isinstance(value, str) else value)
            )
        case "enum":
            if len(value) > _MAX_ENUM_LISTED:
                return f"must be one of the {len(value)} allowed values"
            return "must be one of " + ", ".join(_json(item) for item in value)
        case "const":
            return f"must be {_json(value)}"
        case "pattern":
            return f"must match {value}"
        case "format":
            return f"must be a valid {value}"
        case "minimum":
            return f"must be at least {value}"
        case "maximum":
            return f"must be at most {value}"
        case "exclusiveMinimum":
            return f"must be more than {value}"
        case "exclusiveMaximum":
            return f"must be less than {value}"
        case "multipleOf":
            return f"must be a multiple of {value}"
        case "minLength" | "minItems" | "minProperties" if value == 1:
            return "must not be empty"
        case "minLength":
            return f"must be at least {value} characters long"
        case "maxLength":
            return f"must be at most {value} characters long"
        case "minItems":
            return f"must have at least {value} items"
        case "maxItems":
            return f"must have at most {value} items"
        case "minProperties":
            return f"must have at least {value} members"
        case "maxProperties":
            return f"must have at most {value} members"
        case "uniqueItems":
            return "must not repeat an item"
        case "contains":
            return "must contain a matching item"
        case "oneOf":
            return "must match exactly one of the allowed forms, " + (
                "but matches none" if error.context else "but matches more than one"
            )
        case "anyOf":
            return "must match at least one of the allowed forms"
        case "not":
            return "is not allowed here"
        case None | "false":
            return "is not allowed"
        case _:
            return f"breaks the {keyword} rule"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pointer(path: tuple[Segment, ...]) -> str:
    return "".join("/" + str(segment).replace("~", "~0").replace("/", "~1") for segment in path)


def _order(item: tuple[tuple[Segment, ...], str]) -> tuple[tuple[tuple[int, int, str], ...], str]:
    path, message = item
    return tuple((0, s, "") if isinstance(s, int) else (1, 0, s) for s in path), message
