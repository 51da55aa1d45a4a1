"""The loader: which schemas ship, that each is a sound draft 2020-12 schema, and how errors are reported."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import schemas
from schemas import BASE_URI, SchemaError, UnknownSchemaError, load, names, validate, validator, version
from schemas.checks import FORMAT_CHECKER, RccValidator
from schemas.loader import _inline
from tests.schemas.examples import DELETE, DIGEST, VALID, agreement, directory, edited, search_request, tree_head

LIBRARIES = {"common", "vocabulary"}
# RFC 9457 invites extension members, so the problem document alone stays open at its root.
OPEN_OBJECTS = {("problem", "")}


_IN_MAPS = {"properties", "patternProperties", "$defs", "dependentSchemas"}
_IN_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_IN_VALUES = {"items", "contains", "not", "if", "then", "else", "additionalProperties", "propertyNames"}


def _walk(schema: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema with its location (only keyword positions that hold schemas, never annotations)."""
    if not isinstance(schema, dict):
        return
    yield where, schema
    for keyword, value in schema.items():
        if keyword in _IN_MAPS:
            for key, child in value.items():
                yield from _walk(child, f"{where}/{keyword}/{key}")
        elif keyword in _IN_LISTS:
            for index, child in enumerate(value):
                yield from _walk(child, f"{where}/{keyword}/{index}")
        elif keyword in _IN_VALUES:
            yield from _walk(value, f"{where}/{keyword}")


class TestNames:
    def test_lists_every_schema_file_in_the_package(self):
        shipped = sorted(
            p.name.removesuffix(".schema.json") for p in Path(schemas.__file__).parent.glob("*.schema.json")
        )
        assert names() == shipped

    def test_every_document_schema_has_a_valid_example(self):
        assert set(names()) - LIBRARIES == set(VALID)

    def test_returns_a_list_the_caller_may_change(self):
        names().clear()
        assert "agreement" in names()


@pytest.mark.parametrize("name", names())
class TestShippedSchema:
    def test_is_a_valid_draft_2020_12_schema(self, name):
        Draft202012Validator.check_schema(load(name))

    def test_id_names_the_schema_and_its_major_version(self, name):
        assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version(name))
        assert load(name)["$id"] == f"{BASE_URI}{name}/{version(name).split('.')[0]}"

    def test_every_ref_resolves_in_the_shipped_set(self, name):
        registry = Registry().with_resources((load(n)["$id"], DRAFT202012.create_resource(load(n))) for n in names())
        base = load(name)["$id"]
        refs = [node["$ref"] for _, node in _walk(load(name)) if isinstance(node.get("$ref"), str)]
        for ref in refs:
            registry.resolver(base_uri=base).lookup(ref)  # raises Unresolvable
        assert refs or name in {"tree-head", "problem"} or name in LIBRARIES

    def test_every_format_it_uses_is_asserted(self, name):
        used = {node["format"] for _, node in _walk(load(name)) if isinstance(node.get("format"), str)}
        assert used <= set(FORMAT_CHECKER.checkers)

    def test_every_object_refuses_unknown_members(self, name):
        open_objects = [
            where
            for where, node in _walk(load(name))
            if node.get("type") == "object" and node.get("additionalProperties") is not False
        ]
        assert [(name, where) for where in open_objects if (name, where) not in OPEN_OBJECTS] == []


class TestIds:
    def test_are_unique(self):
        ids = [load(name)["$id"] for name in names()]
        assert len(ids) == len(set(ids))


class TestLoad:
    def test_returns_a_fresh_copy_each_time(self):
        load("vacancy")["properties"].clear()
        assert "urn" in load("vacancy")["properties"]

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("nope", id="an unknown name"),
            pytest.param("../pyproject", id="a path outside the package"),
            pytest.param("vacancy.schema.json", id="a file name"),
            pytest.param("vocabulary.py", id="a module"),
            pytest.param("", id="the empty name"),
        ],
    )
    def test_refuses_a_name_that_does_not_ship(self, name):
        for call in (load, version, validator, lambda n: validate(n, {})):
            with pytest.raises(UnknownSchemaError) as raised:
                call(name)
            assert raised.value.name == name


class TestValidator:
    def test_is_built_once_per_schema(self):
        assert validator("agreement") is validator("agreement")

    @pytest.mark.parametrize(
        ("name", "changes", "path", "message"),
        [
            pytest.param(
                "agreement",
                {"/grants/0/datasets/-": "capacity.children"},
                "/grants/0/datasets/1",
                "must be one of",
                id="a dataset is checked against the vocabulary file",
            ),
            pytest.param(
                "descriptor",
                {"/jwks/keys/0/status": "revoked"},
                "/jwks/keys/0/status",
                'must be one of "active", "retired"',
                id="a descriptor reaches the vocabulary through the jwks file",
            ),
            pytest.param(
                "capacity-search-response",
                {"/results/0/vacancy/la_code": "E12000008"},
                "/results/0/vacancy/la_code",
                "must be an ONS local authority code",
                id="a response reaches the common file through the vacancy file",
            ),
        ],
    )
    def test_follows_refs_across_files(self, name, changes, path, message):
        errors = validate(name, edited(VALID[name](), changes))
        assert [e.path for e in errors] == [path]
        assert errors[0].message.startswith(message)

    def test_leaves_a_recursive_ref_for_the_registry_to_resolve(self):
        # No shipped schema recurses; one that did must still validate, not recurse forever while inlining.
        tree = {
            "$id": "https://rcc-registry.example/test/tree",
            "type": "object",
            "additionalProperties": False,
            "properties": {"n": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}},
        }
        registry = Registry().with_resource(tree["$id"], DRAFT202012.create_resource(tree))
        inlined = _inline(tree, tree["$id"], registry)
        errors = RccValidator(inlined, registry=registry).iter_errors({"children": [{"children": [{"n": "x"}]}]})
        assert [list(e.absolute_path) for e in errors] == [["children", 0, "children", 0, "n"]]


class TestValidate:
    def test_reports_unknown_members_each_at_its_own_path(self):
        request = edited(search_request(), {"/name": "Jane Doe", "/date_of_birth": "2010-01-01", "/upn": "A1"})
        assert validate("capacity-search-request", request) == [
            SchemaError("/date_of_birth", "is not allowed"),
            SchemaError("/name", "is not allowed"),
            SchemaError("/upn", "is not allowed"),
        ]

    def test_reports_a_missing_member_at_its_own_path(self):
        errors = validate("agreement", edited(agreement(), {"/grants/0/datasets": DELETE}))
        assert errors == [SchemaError("/grants/0/datasets", "is required")]

    def test_reports_a_forbidden_member_at_its_own_path(self):
        errors = validate(
            "agreement", edited(agreement(), {"/supersedes": {"id": "x", "version": 1, "sha256": DIGEST}})
        )
        assert errors == [SchemaError("/supersedes", "version 1 cannot supersede anything")]

    def test_escapes_pointer_segments_as_rfc_6901_says(self):
        errors = validate("tree-head", edited(tree_head(), {"/a~1b~0c": 1}))
        assert [e.path for e in errors] == ["/a~1b~0c"]

    @pytest.mark.parametrize(
        ("instance", "message"),
        [
            pytest.param([], "must be an object", id="an array"),
            pytest.param(None, "must be an object", id="null"),
            pytest.param("tree head", "must be an object", id="a string"),
        ],
    )
    def test_reports_a_root_error_at_the_empty_pointer(self, instance, message):
        assert validate("tree-head", instance) == [SchemaError("", message)]

    def test_orders_array_indices_numerically(self):
        nodes = [edited(directory()["nodes"][0], {"/node_id": f"rcc-{i}"}) for i in range(12)]
        document = edited(directory(), {"/nodes": nodes, "/nodes/10/kind": "local", "/nodes/2/kind": "local"})
        assert [e.path for e in validate("directory", document)] == ["/nodes/2/kind", "/nodes/10/kind"]

    def test_gives_the_same_list_whatever_the_member_order(self):
        document = edited(agreement(), {"/title": 7, "/retention": "6y", "/grants/1/recipients": []})
        reordered = dict(reversed(list(document.items())))
        assert validate("agreement", document) == validate("agreement", reordered)
        assert [e.path for e in validate("agreement", document)] == ["/grants/1/recipients", "/retention", "/title"]

    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({"/title": "SECRET " * 10_000}, id="too long"),
            pytest.param({"/kind": "SECRET " * 10_000}, id="not in the vocabulary"),
            pytest.param({"/retention": "SECRET " * 10_000}, id="not matching a pattern"),
            pytest.param({"/version": ["SECRET"] * 10_000}, id="of the wrong type"),
            pytest.param({"/text_sha256": DIGEST, "/text": "SECRET " * 10_000}, id="in a oneOf"),
            pytest.param({"/SECRET": "SECRET " * 10_000}, id="an unknown member"),
        ],
    )
    def test_never_quotes_the_submitted_value(self, changes):
        errors = validate("agreement", edited(agreement(), changes))
        assert errors
        assert all("SECRET" not in e.message and len(e.message) < 200 for e in errors)

    def test_returns_frozen_errors(self):
        error = validate("tree-head", [])[0]
        with pytest.raises(FrozenInstanceError):
            error.path = "/elsewhere"  # type: ignore[misc]

    def test_resolves_relative_refs_against_the_schema_id(self):
        assert urljoin(load("vacancy")["$id"], "../common/1") == load("common")["$id"]
