"""Streaming parse, validation and pseudonymisation of SSDA903 episode files.

An LA sends one combined CSV per collection year: the 903 header fields (CHILD, SEX, DOB, ETHNIC, UASC)
repeated on every episode row, then the episode fields (DECOM, RNE, LS, CIN, PLACE, PLACE_PROVIDER,
DEC, REC, REASON_PLACE_CHANGE, HOME_POST, PL_POST, URN). Dates are dd/mm/yyyy. Collection year YYYY is
the year ending 31 March YYYY. UASC is ``1`` or ``0``.

Two optional columns carry what the node cannot work out honestly for itself. Postcodes are cut to the
district here and the node holds no postcode directory, so "placed outside the home LA" and "placed more
than 20 miles away" cannot be derived from HOME_POST and PL_POST. The LA can, before export, from full
postcodes, as the DfE does: ``PL_LA`` (ONS code of the LA the child is placed in; a Welsh, Scottish or
Northern Irish council code means outside England) and ``PL_DISTANCE`` (miles from home postcode to
placement postcode). Where they are absent the derived fields are ``None`` and the tables say
"not recorded". UPN, MOTHER, MC_DOB and DUC may be present: they are skipped unread.

A file is accepted or rejected whole: :func:`validate_file` returns every error (up to a cap) and
:func:`read_episodes` yields nothing further after the first one and raises
:class:`InvalidEpisodeFile` at the end, so an importer inside one transaction simply rolls back.

Record-level data never reaches a log. A :class:`RowError` for CHILD, DOB, HOME_POST or PL_POST carries
``<redacted>`` instead of the value (the rule still says what failed), :class:`InvalidEpisodeFile`
carries no values at all, and an :class:`Episode` prints only its LA and year. What is kept is
pseudonymised: CHILD becomes an HMAC-SHA256 of LA and id under the node's secret salt, DOB is cut to the
1st of the month (age at 31 March is computed from the full date first), postcodes are cut to the
district (outward code).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from functools import lru_cache
from itertools import pairwise
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, cast

from registry.core.domain import local_authorities, placement_types
from registry.core.errors import ValidationFailed

if TYPE_CHECKING:
    from _csv import Reader

REQUIRED_COLUMNS = (
    "CHILD", "SEX", "DOB", "ETHNIC", "UASC",
    "DECOM", "RNE", "LS", "CIN", "PLACE", "PLACE_PROVIDER", "DEC", "REC", "REASON_PLACE_CHANGE",
    "HOME_POST", "PL_POST", "URN",
)  # fmt: skip
OPTIONAL_COLUMNS = ("PL_LA", "PL_DISTANCE")
IGNORED_COLUMNS = frozenset({"UPN", "MOTHER", "MC_DOB", "DUC"})
SENSITIVE_COLUMNS = frozenset({"CHILD", "DOB", "HOME_POST", "PL_POST"})
REDACTED = "<redacted>"
MAX_REPORTED_ERRORS = 1000
PSEUDONYM_BYTES = 10  # 80 bits: collisions negligible at any LA's size, and shorter than the full MAC
MIN_SALT_BYTES = 16
AT_DISTANCE_MILES = 20.0
MAX_DISTANCE_MILES = 10_000.0


def _code_list(codes: str) -> frozenset[str]:
    return frozenset(codes.split())


ETHNIC_CODES = _code_list(
    "WBRI WIRI WOTH WIRT WROM MWBC MWBA MWAS MOTH AIND APKN ABAN AOTH BCRB BAFR BOTH CHNE OOTH REFU NOBT"
)
RNE_CODES = _code_list("S L P T B U")
LS_CODES = _code_list("C1 C2 D1 E1 V2 V3 V4 L1 L2 L3 J1 J2 J3")
SHORT_BREAK_LS = frozenset({"V3", "V4"})
CIN_CODES = frozenset(f"N{n}" for n in range(1, 9))
PROVIDER_CODES = frozenset(f"PR{n}" for n in range(6))
REC_CODES = _code_list("X1 E11 E12 E13 E14 E15 E16 E17 E2 E3 E41 E45 E46 E47 E48 E4A E4B E5 E6 E7 E8 E9")
REASON_PLACE_CHANGE_CODES = _code_list("CARPL CLOSE ALLEG STAND APPRR CREQB CREQO CHILD LAREQ PLACE CUSTOD OTHER")
UASC_CODES = {"1": True, "0": False}
TEMPORARY_PLACEMENTS = frozenset({"T0", "T1", "T2", "T3", "T4"})
URN_EXEMPT_PLACEMENTS = frozenset({"P1", "P3", "R1", "R2", "R5", "Z11", "Z12", "Z13", "Z14"}) | TEMPORARY_PLACEMENTS
NO_URN = "XXXXXXX"  # the 903 spelling of "no URN"; read as blank

# The regional demand model's four groups (domain README); every other code is "other".
PLACEMENT_GROUPS: dict[str, str] = (
    dict.fromkeys(("U1", "U2", "U3", "U4", "U5", "U6"), "fostering")
    | dict.fromkeys(("K2", "R1", "P3", "S1"), "residential")
    | dict.fromkeys(("H5", "K3", "P2"), "supported")
)

_POSTCODE_RE = re.compile(r"([A-Z]{1,2}[0-9][A-Z0-9]?) ?(?:[0-9][A-Z]{2})?", re.IGNORECASE)
_URN_RE = re.compile(r"SC[0-9]{6,7}|[0-9]{6,7}")
_NON_ENGLISH_LA_RE = re.compile(r"[WSN][0-9]{8}")

RULES: dict[str, str] = {
    "encoding": "the file is not UTF-8 text",
    "csv-syntax": "the file is not well-formed CSV",
    "file-empty": "the file has no header row",
    "column-missing": "a required column is missing from the header",
    "column-unknown": "the header names a column this register does not accept",
    "column-duplicate": "the header names a column twice",
    "row-length": "the row has a different number of fields from the header",
    "required": "the field is blank but required",
    "child-format": "CHILD must be 1 to 10 letters or digits",
    "code-list": "the value is not in the SSDA903 code list",
    "sex-code-for-year": "SEX is 1/2 up to 2023-24 and M/F/U from 2024-25",
    "place-code-for-year": "the placement code is not valid in this collection year",
    "date-format": "dates are dd/mm/yyyy",
    "dob-after-decom": "the child was born after the episode started",
    "age-18-at-start": "the child was 18 or over when the episode started",
    "open-after-18": "the episode is open at 31 March but the child is 18 or over then",
    "k3-age": "registered supported accommodation (K3) is for 16 and 17 year olds only",
    "decom-after-year-end": "the episode starts after the collection year",
    "dec-before-decom": "the episode ends before it starts",
    "dec-after-year-end": "the episode ends after the collection year",
    "ended-before-year": "the episode ended before the collection year began",
    "rec-required": "an episode that ends needs a reason ceased",
    "rec-without-dec": "a reason ceased is given for an episode that has not ended",
    "provider-required": "PLACE_PROVIDER is required except for temporary placements",
    "urn-required": "the placement needs the setting's Ofsted URN",
    "urn-format": "an Ofsted URN is SC and 6 or 7 digits, or 6 or 7 digits",
    "postcode-format": "not a UK postcode or postcode district",
    "la-code": "not the ONS code of a UK local authority",
    "distance-format": "a distance is a non-negative number of miles",
    "header-inconsistent": "the child's header fields differ between rows",
    "episodes-overlap": "the child's episodes overlap, or an open episode is followed by another",
    "x1-without-next": "X1 says a new episode starts the same day, but none does",
    "rne-without-previous": "the episode continues a period of care, but no episode ended that day with X1",
}


class RowError(NamedTuple):
    """One broken rule: where (``row`` as a spreadsheet numbers it, header = 1; 0 = the whole file) and which rule.

    ``value`` is ``<redacted>`` for CHILD, DOB and postcodes so errors can be shown and logged.
    """

    row: int
    column: str
    value: str
    rule: str


class Episode(NamedTuple):
    """One pseudonymised episode, as the node keeps it, with the fields the tables are cut by."""

    la: str
    year: int
    child: str
    sex: str
    birth_month: date
    ethnic: str
    uasc: bool
    decom: date
    rne: str
    ls: str
    cin: str
    place: str
    place_provider: str | None
    dec: date | None
    rec: str | None
    reason_place_change: str | None
    home_district: str | None
    placement_district: str | None
    urn: str | None
    placement_group: str
    age_at_31_march: int
    outside_la: bool | None
    at_distance: bool | None

    def __repr__(self) -> str:
        return f"Episode(la={self.la!r}, year={self.year}, <record-level fields not shown>)"

    @property
    def short_break(self) -> bool:
        """Agreed series of short breaks (V3/V4): left out of most published counts."""
        return self.ls in SHORT_BREAK_LS


class InvalidEpisodeFile(ValidationFailed):
    """The file breaks at least one rule and is rejected whole; ``row_errors`` says where."""

    code = "invalid-episode-file"
    title = "Invalid SSDA903 episode file"

    def __init__(self, row_errors: list[RowError], *, error_count: int) -> None:
        self.row_errors = row_errors
        self.error_count = error_count
        super().__init__(
            f"{error_count} rule(s) broken; first at row {row_errors[0].row} ({row_errors[0].rule})",
            errors=[e._asdict() | {"row": str(e.row)} for e in row_errors],
            error_count=error_count,
        )


def collection_year_bounds(year: int) -> tuple[date, date]:
    """1 April and 31 March of the collection year that ends in ``year``."""
    return date(year - 1, 4, 1), date(year, 3, 31)


def sex_codes(year: int) -> dict[str, str]:
    """The SEX codes valid in ``year``, mapped to M/F/U so tables compare across the 2024-25 change."""
    return {"1": "M", "2": "F"} if year <= 2024 else {"M": "M", "F": "F", "U": "U"}


def placement_group(place: str) -> str:
    """The regional demand model's group for a placement code: fostering, residential, supported, other."""
    return PLACEMENT_GROUPS.get(place, "other")


def pseudonymise(child: str, *, la: str, salt: bytes) -> str:
    """A stable pseudonym for an LA's child id: reversible only with the node's salt and the id list."""
    _check_salt(salt)
    return hmac.digest(salt, f"{la}:{child}".encode(), "sha256")[:PSEUDONYM_BYTES].hex()


def postcode_district(postcode: str) -> str | None:
    """The outward code of a full postcode or district, or None if it is neither."""
    match = _POSTCODE_RE.fullmatch(postcode.strip())
    return match.group(1).upper() if match else None


def age_on(dob: date, day: date) -> int:
    """Completed years of age on ``day``."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def validate_file(
    source: str | os.PathLike[str] | TextIO, la: str, year: int, *, max_errors: int = MAX_REPORTED_ERRORS
) -> list[RowError]:
    """Every broken rule in the file (at most ``max_errors``), in row order; empty means importable."""
    errors = _Errors(max_errors)
    with _text(source) as stream:
        for _ in _scan(stream, la, year, None, errors, as_text=False):
            pass
    return errors.sorted()


def read_episodes(
    source: str | os.PathLike[str] | TextIO,
    *,
    la: str,
    year: int,
    salt: bytes,
    max_errors: int = MAX_REPORTED_ERRORS,
) -> Iterator[Episode]:
    """Pseudonymised episodes, streamed; raises InvalidEpisodeFile after the last row if any rule broke.

    Episodes stop after the first error (they would be discarded), but checking goes on to the end so the
    LA gets the whole list in one go.
    """
    _check_salt(salt)
    errors = _Errors(max_errors)
    with _text(source) as stream:
        yield from cast(Iterator[Episode], _scan(stream, la, year, salt, errors, as_text=False))
    if errors.count:
        raise InvalidEpisodeFile(errors.sorted(), error_count=errors.count)


def read_rows(
    source: str | os.PathLike[str] | TextIO,
    *,
    la: str,
    year: int,
    salt: bytes,
    blank: str | None = None,
    max_errors: int = MAX_REPORTED_ERRORS,
) -> Iterator[tuple[Any, ...]]:
    """:func:`read_episodes` as plain tuples ready to store: the same fields, with dates as ISO ``YYYY-MM-DD``
    text, booleans as 1 and 0 and an absent value as ``blank``.

    What an importer binds straight to an INSERT or a COPY (SQLite stores a ``Date`` as that text, PostgreSQL
    parses it, and ``1``/``0`` as a boolean), with no per-row conversion: the text of each date is worked out
    once per distinct date. Python's sqlite3 binds ``None`` and ``bool`` through its adapter look-up, at four
    times the cost of an ``int`` or a ``str``, so an SQLite importer asks for ``blank=""`` and turns ``''``
    back into NULL in SQL.
    """
    _check_salt(salt)
    errors = _Errors(max_errors)
    with _text(source) as stream:
        yield from _scan(stream, la, year, salt, errors, as_text=True, blank=blank)
    if errors.count:
        raise InvalidEpisodeFile(errors.sorted(), error_count=errors.count)


_AddError = Callable[[int, str, str, str], None]


class _Errors:
    """Collects errors up to a cap, counting all of them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0
        self.items: list[RowError] = []

    def add(self, row: int, column: str, value: str, rule: str) -> None:
        self.count += 1
        if len(self.items) < self.cap:
            self.items.append(RowError(row, column, REDACTED if column in SENSITIVE_COLUMNS else value, rule))

    def sorted(self) -> list[RowError]:
        return sorted(self.items, key=lambda e: (e.row, e.column, e.rule))


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the key schedule done once per file.

    ``hmac.digest`` re-derives it on every call under OpenSSL 3, which made pseudonymising cost more than
    validating a row. The tests check this against ``hmac.digest``.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) > hashlib.sha256().block_size:
            key = hashlib.sha256(key).digest()
        key = key.ljust(hashlib.sha256().block_size, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _check_salt(salt: bytes) -> None:
    if len(salt) < MIN_SALT_BYTES:
        raise ValueError(f"the pseudonymisation salt must be at least {MIN_SALT_BYTES} bytes")


def _check_scope(la: str, year: int) -> None:
    if la not in local_authorities():
        raise ValueError("unknown local authority code")
    if not 2000 <= year <= 2100:
        raise ValueError("collection year out of range")


def _parse_date(text: str) -> date | None:
    if len(text) != 10 or text[2] != "/" or text[5] != "/":
        return None
    digits = text[:2] + text[3:5] + text[6:]
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        return date(int(text[6:]), int(text[3:5]), int(text[:2]))
    except ValueError:
        return None


class _Day(NamedTuple):
    """What the rules and the stored episode need of one dd/mm/yyyy text, worked out once per distinct date."""

    day: date
    iso: str  # YYYY-MM-DD, as stored
    month: date  # the 1st of the month: what is kept of a date of birth
    month_iso: str
    month_day: int  # month * 100 + day: compares birthdays without building dates
    age: int  # completed years at 31 March of the collection year, were this a date of birth


# Dates in the table of a collection year: every date a valid file can hold (a child is under 18 when an
# episode starts, so no DOB or DECOM is older than this) — others are parsed one by one, as before.
DATE_TABLE_YEARS = 20


def _day(text: str, year_end: date) -> _Day | None:
    day = _parse_date(text)
    if day is None:
        return None
    month = day.replace(day=1)
    return _Day(day, day.isoformat(), month, month.isoformat(), day.month * 100 + day.day, age_on(day, year_end))


@lru_cache(maxsize=4)
def _date_table(year: int) -> dict[str, _Day]:
    """Every dd/mm/yyyy text of the ``DATE_TABLE_YEARS`` years up to the end of the collection year (~7,700)."""
    year_end = collection_year_bounds(year)[1]
    end_month_day = year_end.month * 100 + year_end.day
    day, one = date(year - DATE_TABLE_YEARS, 1, 1), timedelta(days=1)
    months: dict[str, tuple[date, str]] = {}
    table: dict[str, _Day] = {}
    while day <= year_end:
        iso = day.isoformat()
        month = months.get(iso[:7])
        if month is None:
            month = months[iso[:7]] = (day.replace(day=1), iso[:8] + "01")
        month_day = day.month * 100 + day.day
        age = year_end.year - day.year - (end_month_day < month_day)
        table[f"{iso[8:]}/{iso[5:7]}/{iso[:4]}"] = _Day(day, iso, month[0], month[1], month_day, age)
        day += one
    return table


# What cross-row rules need of one episode (DECOM, DEC, RNE, REC, row), held only while the file is read.
_Seen = tuple[date, date | None, str, str, int]


@contextmanager
def _text(source: str | os.PathLike[str] | TextIO) -> Iterator[TextIO]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8-sig", newline="") as fh:
            yield fh
    else:
        yield source


def _read_header(header: list[str], errors: _Errors) -> dict[str, int] | None:
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        if name in index:
            errors.add(1, name, name, "column-duplicate")
        elif name not in REQUIRED_COLUMNS and name not in OPTIONAL_COLUMNS and name not in IGNORED_COLUMNS:
            errors.add(1, name, name, "column-unknown")
        index[name] = position
    for name in REQUIRED_COLUMNS:
        if name not in index:
            errors.add(1, name, "", "column-missing")
    index["_width"] = len(header)
    return None if errors.count else index


def _scan(
    stream: TextIO, la: str, year: int, salt: bytes | None, errors: _Errors, *, as_text: bool, blank: str | None = None
) -> Iterator[tuple[Any, ...]]:
    _check_scope(la, year)
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            errors.add(1, "", "", "file-empty")
            return
        index = _read_header([h.strip().lstrip("\ufeff").upper() for h in header], errors)
        if index is not None:
            yield from _scan_rows(reader, index, la, year, salt, errors, as_text, blank)
    except UnicodeDecodeError:  # text is decoded in blocks, so no row can be named: row 0 is the whole file
        errors.add(0, "", "", "encoding")
    except csv.Error:
        errors.add(reader.line_num, "", "", "csv-syntax")


def _scan_rows(  # one straight pass per row: it is what keeps import fast
    reader: Reader,
    index: dict[str, int],
    la: str,
    year: int,
    salt: bytes | None,
    errors: _Errors,
    as_text: bool,
    blank: str | None,
) -> Iterator[tuple[Any, ...]]:
    """Check every rule of every row and yield the episodes (``as_text``: plain tuples as :func:`read_rows` says).

    Written for speed, measured: each distinct date, DOB and postcode is worked out once per file (dates from
    a per-year table), each child's pseudonym once, and a row costs a few dozen set and dict look-ups. Fields
    are checked as read and stripped only if a rule breaks (every field is checked against a code list, a
    table or a pattern that white space fails, or, for PL_DISTANCE, parsed by ``float``, which ignores it).
    """
    year_start, year_end = collection_year_bounds(year)
    sexes = sex_codes(year)
    placements = placement_types()
    valid_places = frozenset(code for code, p in placements.items() if p.valid_in(year))
    known_las = local_authorities()
    width = index.pop("_width")
    fields = itemgetter(*(index[c] for c in REQUIRED_COLUMNS))
    i_pl_la = index.get("PL_LA")
    i_distance = index.get("PL_DISTANCE")
    prefix = f"{la}:".encode()
    mac = _HmacSha256(salt) if salt is not None else None
    table = _date_table(year)
    dates: dict[str, _Day | None] = {}  # texts outside the table (an old or malformed date), parsed once
    pseudonyms: dict[str, str] = {}
    districts: dict[str, str] = {}  # postcode -> district
    # each child's header fields and first episode (most children have one), then any further episodes
    first: dict[str, tuple[str, str, str, str, _Seen | None]] = {}
    more: dict[str, list[_Seen]] = {}
    suspects: list[str] = []  # children whose first episode breaks a cross-row rule unless another follows
    urns: set[str] = set()  # URNs already seen well-formed
    add, strip, postcode = errors.add, str.strip, _POSTCODE_RE.fullmatch
    groups, new_row = PLACEMENT_GROUPS, tuple.__new__
    kind: type[tuple[object, ...]] = tuple if as_text else Episode
    at_day, at_month = (1, 3) if as_text else (0, 2)  # which _Day fields are stored: ISO text or dates
    flags: tuple[object, object] = (0, 1) if as_text else (False, True)

    for raw in reader:
        if not raw:
            continue
        row = reader.line_num
        if len(raw) != width:
            add(row, "", str(len(raw)), "row-length")
            continue
        f = raw  # stripped only if a rule breaks: see the end of this loop
        while True:
            checked, kept = errors.count, len(errors.items)
            (child, sex, dob_s, ethnic, uasc_s, decom_s, rne, ls, cin, place, provider, dec_s, rec, rpc, home_post,
             pl_post, urn) = fields(f)  # fmt: skip
            pl_la = f[i_pl_la] if i_pl_la is not None else ""
            distance_s = f[i_distance] if i_distance is not None else ""

            known = first.get(child)
            if known is None:
                if not child:
                    add(row, "CHILD", child, "required")
                elif not (len(child) <= 10 and child.isascii() and child.isalnum()):  # 1-10 of A-Z a-z 0-9
                    add(row, "CHILD", child, "child-format")
            if sex not in sexes:
                add(row, "SEX", sex, "sex-code-for-year" if sex else "required")
            birth = table.get(dob_s)
            if birth is None:
                try:
                    birth = dates[dob_s]
                except KeyError:
                    birth = dates[dob_s] = _day(dob_s, year_end)
                if birth is None:
                    add(row, "DOB", dob_s, "date-format" if dob_s else "required")
            if ethnic not in ETHNIC_CODES:
                add(row, "ETHNIC", ethnic, "code-list" if ethnic else "required")
            if uasc_s not in UASC_CODES:
                add(row, "UASC", uasc_s, "code-list" if uasc_s else "required")
            if rne not in RNE_CODES:
                add(row, "RNE", rne, "code-list" if rne else "required")
            if ls not in LS_CODES:
                add(row, "LS", ls, "code-list" if ls else "required")
            if cin not in CIN_CODES:
                add(row, "CIN", cin, "code-list" if cin else "required")
            start = table.get(decom_s)
            if start is None:
                try:
                    start = dates[decom_s]
                except KeyError:
                    start = dates[decom_s] = _day(decom_s, year_end)
            decom = None
            age_at_start = -1
            if start is None:
                add(row, "DECOM", decom_s, "date-format" if decom_s else "required")
            else:
                decom = start.day
                if decom > year_end:
                    add(row, "DECOM", decom_s, "decom-after-year-end")
                if birth is not None:
                    if birth.day > decom:
                        add(row, "DOB", dob_s, "dob-after-decom")
                    else:
                        age_at_start = decom.year - birth.day.year - (start.month_day < birth.month_day)
                        if age_at_start >= 18:
                            add(row, "DOB", dob_s, "age-18-at-start")
            if place not in valid_places:
                add(row, "PLACE", place, "required" if not place else
                    "place-code-for-year" if place in placements else "code-list")  # fmt: skip
            elif place == "K3" and age_at_start >= 0 and not 16 <= age_at_start <= 17:
                add(row, "PLACE", place, "k3-age")
            if provider:
                if provider not in PROVIDER_CODES:
                    add(row, "PLACE_PROVIDER", provider, "code-list")
            elif place not in TEMPORARY_PLACEMENTS:
                add(row, "PLACE_PROVIDER", provider, "provider-required")
            end = dec = None
            if dec_s:
                end = table.get(dec_s)
                if end is None:
                    try:
                        end = dates[dec_s]
                    except KeyError:
                        end = dates[dec_s] = _day(dec_s, year_end)
                if end is None:
                    add(row, "DEC", dec_s, "date-format")
                else:
                    dec = end.day
                    if decom is not None and dec < decom:
                        add(row, "DEC", dec_s, "dec-before-decom")
                    elif dec > year_end:
                        add(row, "DEC", dec_s, "dec-after-year-end")
                    elif dec < year_start:
                        add(row, "DEC", dec_s, "ended-before-year")
                if not rec:
                    add(row, "REC", rec, "rec-required")
            elif birth is not None and birth.age >= 18:
                add(row, "DEC", dec_s, "open-after-18")
            if rec:
                if not dec_s:
                    add(row, "REC", rec, "rec-without-dec")
                if rec not in REC_CODES:
                    add(row, "REC", rec, "code-list")
            if rpc and rpc not in REASON_PLACE_CHANGE_CODES:
                add(row, "REASON_PLACE_CHANGE", rpc, "code-list")
            home_district = placement_district = None
            if home_post:
                home_district = districts.get(home_post)  # a child's home postcode repeats on each of its rows
                if home_district is None:
                    match = postcode(home_post)
                    if match is None:
                        add(row, "HOME_POST", home_post, "postcode-format")
                    else:
                        home_district = districts[home_post] = match.group(1).upper()
            if pl_post:
                placement_district = districts.get(pl_post)  # carers and homes take several children, or one again
                if placement_district is None:
                    match = postcode(pl_post)
                    if match is None:
                        add(row, "PL_POST", pl_post, "postcode-format")
                    else:
                        placement_district = districts[pl_post] = match.group(1).upper()
            outside_england = False
            if pl_la and pl_la not in known_las:
                outside_england = _NON_ENGLISH_LA_RE.fullmatch(pl_la) is not None
                if not outside_england:
                    add(row, "PL_LA", pl_la, "la-code")
            distance = None
            if distance_s:
                try:
                    distance = float(distance_s)
                except ValueError:
                    distance = None
                if distance is None or not 0.0 <= distance < MAX_DISTANCE_MILES:  # also refuses nan and inf
                    add(row, "PL_DISTANCE", distance_s, "distance-format")
            if urn == NO_URN:
                urn = ""
            if not urn:
                if place not in URN_EXEMPT_PLACEMENTS and not outside_england:
                    add(row, "URN", urn, "urn-required")
            elif urn not in urns:
                if _URN_RE.fullmatch(urn) is None:
                    add(row, "URN", urn, "urn-format")
                else:
                    urns.add(urn)
            if errors.count == checked or f is not raw:
                break
            # A rule broke on the fields as read, maybe only for white space around one (which is tolerated):
            # take back what this reading reported and read the row again with every field stripped.
            errors.count = checked
            del errors.items[kept:]
            f = list(map(strip, raw))

        if child:
            seen = (decom, dec, rne, rec, row) if decom is not None and (dec is not None or not dec_s) else None
            if known is None:
                first[child] = (sex, dob_s, ethnic, uasc_s, seen)
                if seen is not None and (rec == "X1" or (rne != "S" and seen[0] >= year_start)):
                    suspects.append(child)
            else:
                if known[0] != sex or known[1] != dob_s or known[2] != ethnic or known[3] != uasc_s:
                    n = next(n for n, v in enumerate((sex, dob_s, ethnic, uasc_s)) if known[n] != v)
                    column = ("SEX", "DOB", "ETHNIC", "UASC")[n]
                    add(row, column, f[index[column]], "header-inconsistent")
                if seen is not None:
                    episodes = more.get(child)
                    if episodes is not None:
                        episodes.append(seen)
                    else:
                        more[child] = [seen] if known[4] is None else [known[4], seen]

        if errors.count or mac is None or birth is None or start is None:
            continue  # after the first error the file is rejected: stop building episodes
        pseudonym = pseudonyms.get(child)
        if pseudonym is None:
            pseudonym = pseudonyms[child] = mac.digest(prefix + child.encode())[:PSEUDONYM_BYTES].hex()
        yield new_row(kind, (
            la, year, pseudonym, sexes[sex], birth[at_month], ethnic, flags[uasc_s == "1"], start[at_day], rne, ls,
            cin, place, provider or blank, end[at_day] if end is not None else blank, rec or blank, rpc or blank,
            home_district or blank, placement_district or blank,
            urn or blank, groups.get(place, "other"), birth.age,
            flags[pl_la != la] if pl_la else blank,
            flags[distance > AT_DISTANCE_MILES] if distance is not None else blank,
        ))  # fmt: skip

    _check_sequences(first, more, suspects, year_start, add, clean=not errors.count)


def _check_sequences(
    first: dict[str, tuple[str, str, str, str, _Seen | None]],
    more: dict[str, list[_Seen]],
    suspects: list[str],
    year_start: date,
    add: _AddError,
    *,
    clean: bool,
) -> None:
    """Cross-row rules, per child: no overlaps, X1 followed by a same-day episode, and the reverse.

    A child with one episode can only break them if it ended with X1 or continued a period from 1 April on:
    ``suspects`` lists those (in the order they first appear), so the other children need no look at all.
    ``clean``: no row broke a rule, so each child's episodes that :func:`_chained` accepts need no closer look.
    """
    for child in suspects:
        only = first[child][4]
        if only is None or child in more:
            continue
        decom, _, rne, rec, row = only
        if rec == "X1":
            add(row, "REC", rec, "x1-without-next")
        if rne != "S" and rne in RNE_CODES and decom >= year_start:
            add(row, "RNE", rne, "rne-without-previous")
    by_start = itemgetter(0)
    for seen in more.values():
        if clean and _chained(seen, year_start):
            continue
        seen.sort(key=by_start)  # stable: episodes starting the same day stay in row order
        for (_, earlier_dec, _, _, _), (later_decom, _, _, _, later_row) in pairwise(seen):
            if earlier_dec is None or earlier_dec > later_decom:
                add(later_row, "DECOM", "", "episodes-overlap")
        starts = [s[0] for s in seen]
        x1_ends = [s[1] for s in seen if s[3] == "X1"]
        for decom, dec, rne, rec, row in seen:
            same_day_self = dec == decom  # a same-day episode cannot follow (or precede) itself
            if rec == "X1" and dec is not None and starts.count(dec) - same_day_self <= 0:
                add(row, "REC", rec, "x1-without-next")
            if (
                rne != "S"
                and rne in RNE_CODES
                and decom >= year_start
                and x1_ends.count(decom) - (same_day_self and rec == "X1") <= 0
            ):
                add(row, "RNE", rne, "rne-without-previous")


def _chained(seen: list[_Seen], year_start: date) -> bool:
    """True if a child's episodes, in row order, visibly break no cross-row rule; False if in doubt.

    A file usually lists them as a chain, and that is enough: in order of start (each row ending no later than
    the next starts, so no overlap either), every X1 end the day the next episode starts, and every episode
    that continues a period (RNE not S, from 1 April) starting the day the one before ended with X1. One pass
    instead of the sort and counts of the full check, which is then only needed for the rest. Relies on every
    row having passed its own rules (an end is never before its start).
    """
    previous_dec: date | None = None
    previous_x1 = False
    for n, (decom, dec, rne, rec, _) in enumerate(seen):
        if n and (previous_dec is None or previous_dec > decom or (previous_x1 and previous_dec != decom)):
            return False
        if rne != "S" and decom >= year_start and not previous_x1:  # X1 ends on this start (above)
            return False
        previous_dec, previous_x1 = dec, rec == "X1"
    return not previous_x1
