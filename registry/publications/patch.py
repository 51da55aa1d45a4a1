"""RFC 6902 JSON Patch between two JSON documents: what changed from one publication version to another.

A small, exact diff rather than a dependency: objects are compared member by member (removals, then
additions, then changes inside common members, each in sorted key order), arrays index by index with
the tail added or removed, and anything else that differs is replaced. The patch is not always the
shortest possible (an item inserted at the front of an array shows as changes to every later item) but
applying it to the first document always gives exactly the second, which is what a reader relies on.

Equality is JSON's, not Python's: ``true`` is not ``1``, while ``1`` and ``1.0`` are the same number.
"""

from __future__ import annotations

from typing import Any

Operation = dict[str, Any]


def diff(source: Any, target: Any) -> list[Operation]:
    """The JSON Patch that turns ``source`` into ``target`` (empty when they are equal as JSON)."""
    operations: list[Operation] = []
    _diff(source, target, "", operations)
    return operations


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON values: booleans never equal numbers, ints equal floats of the same value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _diff(source: Any, target: Any, path: str, out: list[Operation]) -> None:
    if json_equal(source, target):
        return
    if isinstance(source, dict) and isinstance(target, dict):
        for key in sorted(source.keys() - target.keys()):
            out.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key in sorted(target.keys() - source.keys()):
            out.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": target[key]})
        for key in sorted(source.keys() & target.keys()):
            _diff(source[key], target[key], f"{path}/{_escape(key)}", out)
    elif isinstance(source, list) and isinstance(target, list):
        common = min(len(source), len(target))
        for index in range(common):
            _diff(source[index], target[index], f"{path}/{index}", out)
        # Remove from the end backwards so each index is still valid when its operation applies.
        for index in range(len(source) - 1, common - 1, -1):
            out.append({"op": "remove", "path": f"{path}/{index}"})
        for index in range(common, len(target)):
            out.append({"op": "add", "path": f"{path}/{index}", "value": target[index]})
    else:
        out.append({"op": "replace", "path": path, "value": target})
