"""How values are judged: the format checks and the three keywords whose stock Python behaviour is wrong here.

JSON Schema means ECMA-262 regular expressions and decimal numbers. Stock ``jsonschema`` on Python gets
four things wrong for this product, each verified on the installed version:

* ``pattern`` runs Python's ``re``, where ``$`` also matches before a final newline (``"E12000008\\n"``
  passed as a region code) and ``\\d`` matches any Unicode digit. Here ``$`` is end of input and ``\\d``,
  ``\\w`` are ASCII, as in ECMA-262.
* ``multipleOf: 0.01`` divides binary floats, so about one penny amount in seven (``0.07``, ``1234.57``)
  was refused. Here the JSON number is compared as the decimal it was written as.
* ``json.loads`` accepts ``NaN`` and ``Infinity``, and they pass ``minimum``/``maximum`` (every comparison
  with NaN is false). They are not JSON, cannot be canonicalised (RFC 8785) or signed, so they are not numbers.
* ``date-time`` and ``uri`` are silently not checked unless optional packages are installed. Here every
  format the shipped schemas use is checked by the standard library, the same on every machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]
from jsonschema.validators import extend  # type: ignore[import-untyped]

_DURATION = re.compile(
    r"P(?:[0-9]+W|(?=[0-9]|T[0-9])(?:[0-9]+Y)?(?:[0-9]+M)?(?:[0-9]+D)?"
    r"(?:T(?=[0-9])(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+S)?)?)"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Characters RFC 3986 never allows in a URI, even percent-encoding aside.
_NOT_IN_URI = re.compile(r"[\x00-\x20\x7f<>\"{}|\\^`]")
_EMAIL = re.compile(r"[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+")

FORMAT_CHECKER = FormatChecker(formats=())
"""The only formats asserted; a test checks that every ``format`` in a shipped schema is one of them."""


def _is_date(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _DATE.fullmatch(instance)
    return match is not None and _calendar_ok(*(int(part) for part in match.groups()))


def _is_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _DATE_TIME.fullmatch(instance)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    offset_hours, offset_minutes = (int(part or 0) for part in match.groups()[6:])
    # RFC 3339 allows a leap second (:60); datetime does not, so check the rest with :59.
    return (
        _calendar_ok(year, month, day)
        and hour <= 23
        and minute <= 59
        and second <= 60
        and offset_hours <= 23
        and offset_minutes <= 59
    )


def _is_uri(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not instance.isascii() or _NOT_IN_URI.search(instance):
        return False
    scheme, colon, _ = instance.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return False
    if scheme.lower() in ("http", "https"):
        try:
            return bool(urlsplit(instance).hostname)
        except ValueError:
            return False
    return True


def _is_uri_reference(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return instance.isascii() and not _NOT_IN_URI.search(instance)


def _is_email(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return instance.isascii() and _EMAIL.fullmatch(instance) is not None


def _is_duration(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return _DURATION.fullmatch(instance) is not None


for _format, _check in {
    "date": _is_date,
    "date-time": _is_date_time,
    "uri": _is_uri,
    "uri-reference": _is_uri_reference,
    "email": _is_email,
    "duration": _is_duration,
}.items():
    FORMAT_CHECKER.checks(_format)(_check)


def _calendar_ok(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=512)
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """Compile a JSON Schema pattern so that it matches as ECMA-262 (without flags) would.

    Only the differences that matter to anchored, ASCII patterns are bridged: ``$`` outside a character
    class becomes ``\\Z`` (end of input, never before a final newline) and classes are ASCII. Python and
    ECMA agree on everything else the shipped schemas use.
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"does not match {pattern}")


def _decimal(number: int | float | Decimal) -> Decimal:
    # str(float) is the shortest repr that round-trips: the decimal the JSON text most plausibly held.
    return Decimal(str(number)) if isinstance(number, float) else Decimal(number)


def _multiple_of(validator: Any, divisor: float, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    # Finite by the type checker below, and the metaschema keeps divisor > 0: no InvalidOperation.
    if validator.is_type(instance, "number") and _decimal(instance) % _decimal(divisor) != 0:
        yield ValidationError(f"is not a multiple of {divisor}")


def _is_number(_checker: Any, instance: object) -> bool:
    if isinstance(instance, bool) or not isinstance(instance, int | float | Decimal):
        return False
    return not isinstance(instance, float | Decimal) or math.isfinite(instance)


def _is_integer(_checker: Any, instance: object) -> bool:
    if not _is_number(_checker, instance):
        return False
    return isinstance(instance, int) or (isinstance(instance, float | Decimal) and instance == int(instance))


RccValidator: Any = extend(
    Draft202012Validator,
    validators={"pattern": _pattern, "multipleOf": _multiple_of},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many({"number": _is_number, "integer": _is_integer}),
)
"""Draft 2020-12 with ECMA ``pattern``, decimal ``multipleOf`` and finite-only numbers; all else stock."""
