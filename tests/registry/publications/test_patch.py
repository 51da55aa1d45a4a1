"""The JSON Patch diff: applying diff(a, b) to a gives b, checked with an independent RFC 6902 applier."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.publications.patch import diff, json_equal


def _tokens(path: str) -> list[str]:
    assert path == "" or path.startswith("/")
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/remove/replace (the only operations the diff emits), written from the RFC, not the product."""
    result = copy.deepcopy(document)
    for operation in patch:
        assert set(operation) <= {"op", "path", "value"}
        tokens = _tokens(operation["path"])
        if not tokens:
            assert operation["op"] == "replace"
            result = copy.deepcopy(operation["value"])
            continue
        parent: Any = result
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        op = operation["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                assert 0 <= index <= len(parent)
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                del parent[index]
            else:
                assert op == "replace" and index < len(parent)
                parent[index] = copy.deepcopy(operation["value"])
        else:
            if op == "add":
                parent[last] = copy.deepcopy(operation["value"])
            elif op == "remove":
                del parent[last]
            else:
                assert op == "replace" and last in parent
                parent[last] = copy.deepcopy(operation["value"])
    return result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([0.5, 1.0, 7250.75]) | st.text("ab/~", max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text("ab/~", max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


class TestDiff:
    @pytest.mark.parametrize(
        ("source", "target", "expected"),
        [
            ({"a": 1}, {"a": 1}, []),
            ({"a": 1}, {"a": 2}, [{"op": "replace", "path": "/a", "value": 2}]),
            ({"a": 1}, {}, [{"op": "remove", "path": "/a"}]),
            ({}, {"a/b": 1}, [{"op": "add", "path": "/a~1b", "value": 1}]),
            ({"a~": [1, 2, 3]}, {"a~": [1]}, [{"op": "remove", "path": "/a~0/2"}, {"op": "remove", "path": "/a~0/1"}]),
            ([1], [1, 2], [{"op": "add", "path": "/1", "value": 2}]),
            ({"a": 1}, [1], [{"op": "replace", "path": "", "value": [1]}]),
            ({"a": True}, {"a": 1}, [{"op": "replace", "path": "/a", "value": 1}]),
            ({"a": 5500}, {"a": 5500.0}, []),
        ],
    )
    def test_known_patches(self, source: Any, target: Any, expected: list[dict[str, Any]]) -> None:
        assert diff(source, target) == expected

    @settings(max_examples=300, deadline=None)
    @given(json_values, json_values)
    def test_applying_the_diff_to_the_source_gives_the_target(self, source: Any, target: Any) -> None:
        assert json_equal(apply_patch(source, diff(source, target)), target)

    @settings(max_examples=100, deadline=None)
    @given(json_values)
    def test_a_document_has_no_diff_with_itself(self, value: Any) -> None:
        assert diff(value, copy.deepcopy(value)) == []
