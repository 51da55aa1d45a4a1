"""SSDA903 parsing: every rule caught where it is broken, nothing record-level in errors, stable pseudonyms."""

import hmac
import io
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry.statistics import ssda903
from registry.statistics.ssda903 import (
    OPTIONAL_COLUMNS,
    REDACTED,
    REQUIRED_COLUMNS,
    RULES,
    Episode,
    InvalidEpisodeFile,
    RowError,
    age_on,
    placement_group,
    postcode_district,
    pseudonymise,
    read_episodes,
    read_rows,
    validate_file,
)

LA = "E06000035"  # Medway
YEAR = 2025
SALT = b"node-secret-salt-0123456789"
COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

# A small valid 2024-25 file. Rows 2..6 as a spreadsheet numbers them (header is row 1).
BASE: list[dict[str, str]] = [
    # A1: started in the year, still looked after, in foster care in Medway.
    {"CHILD": "A1", "SEX": "M", "DOB": "14/07/2012", "ETHNIC": "WBRI", "UASC": "0", "DECOM": "01/06/2024",
     "RNE": "S", "LS": "C1", "CIN": "N1", "PLACE": "U6", "PLACE_PROVIDER": "PR1", "DEC": "", "REC": "",
     "REASON_PLACE_CHANGE": "", "HOME_POST": "ME14 1XX", "PL_POST": "ME5 9YY", "URN": "SC123456",
     "PL_LA": LA, "PL_DISTANCE": "3.2"},
    # B2: looked after since 2023; moved to a children's home in Kent in October (two episodes).
    {"CHILD": "B2", "SEX": "F", "DOB": "03/02/2009", "ETHNIC": "MWBC", "UASC": "0", "DECOM": "15/06/2023",
     "RNE": "S", "LS": "C2", "CIN": "N5", "PLACE": "U4", "PLACE_PROVIDER": "PR4", "DEC": "10/10/2024", "REC": "X1",
     "REASON_PLACE_CHANGE": "", "HOME_POST": "ME7 2AB", "PL_POST": "ME7 3CD", "URN": "1234567",
     "PL_LA": LA, "PL_DISTANCE": "1.0"},
    {"CHILD": "B2", "SEX": "F", "DOB": "03/02/2009", "ETHNIC": "MWBC", "UASC": "0", "DECOM": "10/10/2024",
     "RNE": "P", "LS": "C2", "CIN": "N5", "PLACE": "K2", "PLACE_PROVIDER": "PR4", "DEC": "", "REC": "",
     "REASON_PLACE_CHANGE": "CARPL", "HOME_POST": "ME7 2AB", "PL_POST": "CT1 1AA", "URN": "SC7654321",
     "PL_LA": "E10000016", "PL_DISTANCE": "27.5"},
    # C3: started and ceased (returned home) in the year.
    {"CHILD": "C3", "SEX": "U", "DOB": "20/11/2011", "ETHNIC": "BAFR", "UASC": "0", "DECOM": "01/05/2024",
     "RNE": "S", "LS": "V2", "CIN": "N4", "PLACE": "P1", "PLACE_PROVIDER": "PR0", "DEC": "01/02/2025", "REC": "E4A",
     "REASON_PLACE_CHANGE": "", "HOME_POST": "ME1", "PL_POST": "ME1", "URN": "XXXXXXX", "PL_LA": "", "PL_DISTANCE": ""},
    # D4: a 16-year-old UASC in registered supported accommodation.
    {"CHILD": "D4", "SEX": "M", "DOB": "05/01/2008", "ETHNIC": "AOTH", "UASC": "1", "DECOM": "02/09/2024",
     "RNE": "S", "LS": "V2", "CIN": "N8", "PLACE": "K3", "PLACE_PROVIDER": "PR4", "DEC": "", "REC": "",
     "REASON_PLACE_CHANGE": "", "HOME_POST": "", "PL_POST": "ME4 4QQ", "URN": "SC654321",
     "PL_LA": LA, "PL_DISTANCE": "2.4"},
]  # fmt: skip
ROW_OF = {"A1": 0, "B2 first": 1, "B2 second": 2, "C3": 3, "D4": 4}
SECRET_VALUES = ("A1", "B2", "14/07/2012", "03/02/2009", "ME14 1XX", "ME5 9YY", "CT1 1AA")


def csv_text(rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = [",".join(columns)]
    lines += [",".join(row.get(c, "") for c in columns) for row in rows]
    return "\r\n".join(lines) + "\r\n"


def write(tmp_path: Path, text: str | bytes, name: str = "episodes.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def mutated(changes: dict[str, dict[str, str]], extra: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    rows = [dict(r) for r in BASE]
    for who, fields in changes.items():
        rows[ROW_OF[who]].update(fields)
    return rows + (extra or [])


C3_AGAIN = BASE[3] | {"DECOM": "01/01/2025", "DEC": "", "REC": "", "RNE": "S"}

# (case, changes, extra rows, expected [(row, column, rule)])
FIELD_CASES = [
    ("blank child", {"A1": {"CHILD": ""}}, None, [(2, "CHILD", "required")]),
    ("child id with punctuation", {"A1": {"CHILD": "A-1"}}, None, [(2, "CHILD", "child-format")]),
    ("2023-24 sex code in 2024-25", {"A1": {"SEX": "1"}}, None, [(2, "SEX", "sex-code-for-year")]),
    ("ISO date of birth", {"A1": {"DOB": "2012-07-14"}}, None, [(2, "DOB", "date-format")]),
    ("impossible date", {"A1": {"DECOM": "31/02/2025"}}, None, [(2, "DECOM", "date-format")]),
    ("blank start date", {"A1": {"DECOM": ""}}, None, [(2, "DECOM", "required")]),
    ("unknown ethnicity", {"A1": {"ETHNIC": "WXYZ"}}, None, [(2, "ETHNIC", "code-list")]),
    ("UASC as Y", {"A1": {"UASC": "Y"}}, None, [(2, "UASC", "code-list")]),
    ("unknown reason for new episode", {"A1": {"RNE": "Q"}}, None, [(2, "RNE", "code-list")]),
    ("blank legal status", {"A1": {"LS": ""}}, None, [(2, "LS", "required")]),
    ("unknown category of need", {"A1": {"CIN": "N9"}}, None, [(2, "CIN", "code-list")]),
    ("unknown placement", {"A1": {"PLACE": "U9"}}, None, [(2, "PLACE", "code-list")]),
    ("Z11 before 2025-26", {"A1": {"PLACE": "Z11"}}, None, [(2, "PLACE", "place-code-for-year")]),
    ("unknown provider", {"A1": {"PLACE_PROVIDER": "PR9"}}, None, [(2, "PLACE_PROVIDER", "code-list")]),
    ("no provider for foster care", {"A1": {"PLACE_PROVIDER": ""}}, None, [(2, "PLACE_PROVIDER", "provider-required")]),
    ("born after the episode began", {"A1": {"DOB": "02/06/2024"}}, None, [(2, "DOB", "dob-after-decom")]),
    ("18 at the start", {"C3": {"DOB": "01/01/2006"}}, None, [(5, "DOB", "age-18-at-start")]),
    ("18 by 31 March and still open", {"A1": {"DOB": "15/07/2006"}}, None, [(2, "DEC", "open-after-18")]),
    ("K3 for a 15-year-old", {"D4": {"DOB": "05/01/2009"}}, None, [(6, "PLACE", "k3-age")]),
    ("starts after 31 March", {"A1": {"DECOM": "01/04/2025"}}, None, [(2, "DECOM", "decom-after-year-end")]),
    ("ends before it starts", {"C3": {"DEC": "30/04/2024"}}, None, [(5, "DEC", "dec-before-decom")]),
    ("ends after 31 March", {"C3": {"DEC": "01/04/2025"}}, None, [(5, "DEC", "dec-after-year-end")]),
    ("ended last year", {"C3": {"DECOM": "01/01/2024", "DEC": "01/03/2024"}}, None, [(5, "DEC", "ended-before-year")]),
    ("ends without a reason", {"C3": {"REC": ""}}, None, [(5, "REC", "rec-required")]),
    ("reason without an end", {"A1": {"REC": "E4A"}}, None, [(2, "REC", "rec-without-dec")]),
    ("unknown reason ceased", {"C3": {"REC": "E99"}}, None, [(5, "REC", "code-list")]),
    ("unknown reason for change", {"B2 second": {"REASON_PLACE_CHANGE": "WHIM"}}, None,
     [(4, "REASON_PLACE_CHANGE", "code-list")]),
    ("no URN for foster care", {"A1": {"URN": ""}}, None, [(2, "URN", "urn-required")]),
    ("XXXXXXX for foster care", {"A1": {"URN": "XXXXXXX"}}, None, [(2, "URN", "urn-required")]),
    ("malformed URN", {"A1": {"URN": "AB12"}}, None, [(2, "URN", "urn-format")]),
    ("malformed home postcode", {"A1": {"HOME_POST": "NOT A CODE"}}, None, [(2, "HOME_POST", "postcode-format")]),
    ("malformed placement postcode", {"A1": {"PL_POST": "12345"}}, None, [(2, "PL_POST", "postcode-format")]),
    ("unknown placement LA", {"A1": {"PL_LA": "E99999999"}}, None, [(2, "PL_LA", "la-code")]),
    ("negative distance", {"A1": {"PL_DISTANCE": "-3"}}, None, [(2, "PL_DISTANCE", "distance-format")]),
    ("distance as words", {"A1": {"PL_DISTANCE": "far"}}, None, [(2, "PL_DISTANCE", "distance-format")]),
    ("ethnicity changes between rows", {"B2 second": {"ETHNIC": "WBRI"}}, None, [(4, "ETHNIC", "header-inconsistent")]),
    ("date of birth changes between rows", {"B2 second": {"DOB": "04/02/2009"}}, None,
     [(4, "DOB", "header-inconsistent")]),
    ("a new period starts inside the last", {}, [C3_AGAIN], [(7, "DECOM", "episodes-overlap")]),
    ("X1 with nothing after", {"C3": {"REC": "X1"}}, None, [(5, "REC", "x1-without-next")]),
    ("continues a period that never ended", {"A1": {"RNE": "P"}}, None, [(2, "RNE", "rne-without-previous")]),
    ("change of placement without X1 before it", {"B2 first": {"REC": "E8"}}, None,
     [(4, "RNE", "rne-without-previous")]),
]  # fmt: skip


def file_cases(tmp_path: Path) -> list[tuple[str, Path, list[tuple[int, str, str]]]]:
    no_urn = tuple(c for c in COLUMNS if c != "URN")
    extra_field = csv_text(BASE).replace("SC123456,", "SC123456,,", 1)
    return [
        ("no header", write(tmp_path, "", "empty.csv"), [(1, "", "file-empty")]),
        ("no URN column", write(tmp_path, csv_text(BASE, no_urn), "no-urn.csv"), [(1, "URN", "column-missing")]),
        ("an NHS number column", write(tmp_path, csv_text(BASE, (*COLUMNS, "NHS_NUMBER")), "nhs.csv"),
         [(1, "NHS_NUMBER", "column-unknown")]),
        ("LS twice", write(tmp_path, csv_text(BASE, (*COLUMNS, "LS")), "ls.csv"), [(1, "LS", "column-duplicate")]),
        ("a row with an extra field", write(tmp_path, extra_field, "extra.csv"), [(2, "", "row-length")]),
        ("Latin-1 bytes", write(tmp_path, csv_text(BASE).encode() + b"\xff\n", "latin.csv"), [(0, "", "encoding")]),
        ("a stray quote", write(tmp_path, csv_text(BASE) + 'A1,"M"x\r\n', "quote.csv"), [(7, "", "csv-syntax")]),
    ]  # fmt: skip


def found(errors: list[RowError]) -> list[tuple[int, str, str]]:
    return [(e.row, e.column, e.rule) for e in errors]


class TestValidateFile:
    def test_the_base_file_is_clean(self, tmp_path: Path) -> None:
        assert validate_file(write(tmp_path, csv_text(BASE)), LA, YEAR) == []

    @pytest.mark.parametrize(
        ("changes", "extra", "expected"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
    )
    def test_each_broken_field_rule_is_named_at_its_row_and_column(self, tmp_path, changes, extra, expected) -> None:
        path = write(tmp_path, csv_text(mutated(changes, extra)))
        assert found(validate_file(path, LA, YEAR)) == expected

    def test_each_broken_file_rule_is_named(self, tmp_path: Path) -> None:
        for case, path, expected in file_cases(tmp_path):
            assert found(validate_file(path, LA, YEAR)) == expected, case

    def test_every_rule_has_a_case(self, tmp_path: Path) -> None:
        covered = {rule for *_, expected in FIELD_CASES for _, _, rule in expected}
        covered |= {rule for *_, expected in file_cases(tmp_path) for _, _, rule in expected}
        assert covered == set(RULES)

    @pytest.mark.parametrize(
        ("year", "sex", "place", "ok"),
        [(2024, "1", "U6", True), (2024, "M", "U6", False), (2025, "M", "U6", True), (2025, "2", "U6", False),
         (2024, "1", "K3", False), (2025, "M", "H5", True), (2026, "M", "H5", False), (2026, "M", "Z11", True)],
    )  # fmt: skip
    def test_codes_follow_the_collection_year(self, tmp_path, year, sex, place, ok) -> None:
        shift = year - YEAR  # move every date by whole years so only the codes matter
        row = BASE[4] | {"SEX": sex, "PLACE": place, "DOB": f"05/01/{2008 + shift}", "DECOM": f"02/09/{2024 + shift}"}
        assert (validate_file(write(tmp_path, csv_text([row])), LA, year) == []) is ok

    def test_placements_outside_england_need_no_urn(self, tmp_path: Path) -> None:
        rows = mutated({"A1": {"URN": "", "PL_LA": "W06000015"}})
        assert validate_file(write(tmp_path, csv_text(rows)), LA, YEAR) == []

    def test_optional_and_ignored_columns_may_be_absent_or_present(self, tmp_path: Path) -> None:
        assert validate_file(write(tmp_path, csv_text(BASE, REQUIRED_COLUMNS)), LA, YEAR) == []
        with_upn = [r | {"UPN": "A123456789012"} for r in BASE]
        assert validate_file(write(tmp_path, csv_text(with_upn, (*COLUMNS, "UPN"))), LA, YEAR) == []

    def test_surrounding_spaces_and_a_byte_order_mark_are_tolerated(self, tmp_path: Path) -> None:
        text = "\ufeff" + csv_text(BASE).replace(",U6,", ", U6 ,")
        assert validate_file(write(tmp_path, text), LA, YEAR) == []

    def test_white_space_around_any_field_is_tolerated_and_never_reported(self, tmp_path: Path) -> None:
        padded = [{c: f" {v}\t" if v else " " for c, v in row.items()} for row in BASE]
        assert validate_file(write(tmp_path, csv_text(padded)), LA, YEAR) == []
        episodes = list(read_episodes(write(tmp_path, csv_text(padded), "padded.csv"), la=LA, year=YEAR, salt=SALT))
        assert episodes == list(read_episodes(write(tmp_path, csv_text(BASE)), la=LA, year=YEAR, salt=SALT))
        padded[0]["LS"] = " ZZ "  # a real error among padded fields is reported once, as stripped
        (error,) = validate_file(write(tmp_path, csv_text(padded), "bad.csv"), LA, YEAR)
        assert (error.row, error.column, error.value, error.rule) == (2, "LS", "ZZ", "code-list")

    def test_reports_are_capped_but_every_error_is_counted(self, tmp_path: Path) -> None:
        rows = mutated({"A1": {"ETHNIC": "?", "CIN": "?", "LS": "?"}, "D4": {"RNE": "?", "URN": "?"}})
        path = write(tmp_path, csv_text(rows))
        assert len(validate_file(path, LA, YEAR, max_errors=2)) == 2
        with pytest.raises(InvalidEpisodeFile) as caught:
            list(read_episodes(path, la=LA, year=YEAR, salt=SALT, max_errors=2))
        assert (len(caught.value.row_errors), caught.value.error_count) == (2, 5)

    @pytest.mark.parametrize(("la", "year"), [("E99999999", YEAR), (LA, 1999)])
    def test_an_unknown_la_or_year_is_a_caller_error(self, tmp_path, la, year) -> None:
        with pytest.raises(ValueError, match=r"local authority|year"):
            validate_file(write(tmp_path, csv_text(BASE)), la, year)


class TestRedaction:
    @pytest.mark.parametrize(
        ("changes", "column"),
        [({"A1": {"CHILD": "A-1"}}, "CHILD"), ({"A1": {"DOB": "14.07.2012"}}, "DOB"),
         ({"A1": {"HOME_POST": "ME14 1XX9"}}, "HOME_POST"), ({"A1": {"PL_POST": "ME5 9YYY"}}, "PL_POST")],
    )  # fmt: skip
    def test_errors_on_identifying_columns_carry_no_value_but_still_name_the_rule(self, tmp_path, changes, column):
        path = write(tmp_path, csv_text(mutated(changes)))
        (error,) = validate_file(path, LA, YEAR)
        raw = next(iter(changes["A1"].values()))
        assert (error.column, error.value) == (column, REDACTED)
        assert error.rule in RULES
        assert raw not in repr(error) and raw not in str(error)

    def test_the_rejection_carries_no_record_level_value(self, tmp_path: Path) -> None:
        rows = mutated({"A1": {"DOB": "14.07.2012", "ETHNIC": "?"}, "B2 second": {"DOB": "04/02/2009"}})
        with pytest.raises(InvalidEpisodeFile) as caught:
            list(read_episodes(write(tmp_path, csv_text(rows)), la=LA, year=YEAR, salt=SALT))
        exposed = f"{caught.value!s} {caught.value!r} {caught.value.problem()} {caught.value.row_errors!r}"
        assert not [v for v in (*SECRET_VALUES, "14.07.2012", "04/02/2009") if v in exposed]
        assert caught.value.problem()["status"] == 422

    def test_an_episode_prints_no_record_level_field(self, tmp_path: Path) -> None:
        episode = next(read_episodes(write(tmp_path, csv_text(BASE)), la=LA, year=YEAR, salt=SALT))
        assert repr(episode) == f"Episode(la={LA!r}, year={YEAR}, <record-level fields not shown>)"


class TestReadEpisodes:
    def episodes(self, tmp_path: Path, salt: bytes = SALT) -> list[Episode]:
        return list(read_episodes(write(tmp_path, csv_text(BASE)), la=LA, year=YEAR, salt=salt))

    def test_every_row_becomes_a_pseudonymised_episode(self, tmp_path: Path) -> None:
        first = self.episodes(tmp_path)[0]
        assert first.child == pseudonymise("A1", la=LA, salt=SALT)
        assert (first.birth_month, first.age_at_31_march) == (date(2012, 7, 1), 12)
        assert (first.home_district, first.placement_district) == ("ME14", "ME5")
        assert (first.placement_group, first.outside_la, first.at_distance) == ("fostering", False, False)
        kept = " ".join(str(v) for e in self.episodes(tmp_path) for v in e)
        assert not [v for v in SECRET_VALUES if v in kept]

    def test_derived_fields_follow_the_optional_columns(self, tmp_path: Path) -> None:
        episodes = self.episodes(tmp_path)
        moved, returned_home = episodes[2], episodes[3]
        assert (moved.placement_group, moved.outside_la, moved.at_distance) == ("residential", True, True)
        assert (returned_home.outside_la, returned_home.at_distance, returned_home.urn) == (None, None, None)
        assert [e.sex for e in episodes] == ["M", "F", "F", "U", "M"]
        assert [e.uasc for e in episodes] == [False, False, False, False, True]

    def test_a_stream_reads_like_a_file(self, tmp_path: Path) -> None:
        from_stream = list(read_episodes(io.StringIO(csv_text(BASE)), la=LA, year=YEAR, salt=SALT))
        assert from_stream == self.episodes(tmp_path)

    def test_episodes_stop_at_the_first_error_and_the_file_is_rejected(self, tmp_path: Path) -> None:
        path = write(tmp_path, csv_text(mutated({"B2 second": {"PLACE": "??"}})))
        seen: list[Episode] = []
        with pytest.raises(InvalidEpisodeFile) as caught:
            seen.extend(read_episodes(path, la=LA, year=YEAR, salt=SALT))
        assert len(seen) == 2
        assert found(caught.value.row_errors) == [(4, "PLACE", "code-list")]


class TestReadRows:
    """What an importer stores: the episodes' fields as plain values a driver binds without adapting them."""

    def expected(self, episode: Episode, blank: str | None) -> tuple[object, ...]:
        def plain(value: object) -> object:
            if value is None:
                return blank
            if isinstance(value, bool):
                return int(value)
            return value.isoformat() if isinstance(value, date) else value

        return tuple(plain(v) for v in episode)

    @pytest.mark.parametrize("blank", ["", None])
    def test_rows_are_the_episodes_with_iso_dates_0_1_booleans_and_the_blank_asked_for(self, tmp_path, blank) -> None:
        path = write(tmp_path, csv_text(BASE))
        rows = list(read_rows(path, la=LA, year=YEAR, salt=SALT, blank=blank))
        episodes = list(read_episodes(path, la=LA, year=YEAR, salt=SALT))
        assert rows == [self.expected(e, blank) for e in episodes]
        assert all(type(v) in (str, int) or v is blank for row in rows for v in row)  # never bool, date or None
        returned_home = rows[3]
        assert (returned_home[13], returned_home[18], returned_home[21]) == ("2025-02-01", blank, blank)

    def test_rows_stop_at_the_first_error_and_the_file_is_rejected(self, tmp_path: Path) -> None:
        bad = write(tmp_path, csv_text(mutated({"C3": {"LS": "??"}})))
        seen: list[tuple[object, ...]] = []
        with pytest.raises(InvalidEpisodeFile) as caught:
            seen.extend(read_rows(bad, la=LA, year=YEAR, salt=SALT, blank=""))
        assert len(seen) == 3  # rows 2-4 were clean; nothing from row 5 on
        assert found(caught.value.row_errors) == [(5, "LS", "code-list")]


# One child's episodes as the cross-row rules see them, each passing its own row rules: (DECOM, DEC, RNE, REC).
EPISODE = st.tuples(
    st.integers(0, 6),  # start: days after 29 March 2024 (a few start before 1 April, the collection year)
    st.none() | st.integers(0, 3),  # open, or ends this many days after it starts
    st.sampled_from(["S", "P", "L", "B"]),
    st.sampled_from(["X1", "E8"]),
)


class TestCrossRowRules:
    """The one-pass chain check only ever spares the full check where the full check finds nothing."""

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.lists(EPISODE, min_size=2, max_size=4))
    @example([(0, 1, "S", "X1"), (3, None, "S", "E8")])  # an X1 end with no start that day
    @example([(3, 0, "S", "X1"), (3, None, "P", "E8")])  # a same-day X1 episode, then its continuation
    @example([(4, 1, "S", "X1"), (5, None, "L", "E8")])  # a continuation the day after the X1 end
    @example([(5, None, "S", "E8"), (2, 3, "S", "X1")])  # rows not in order of start
    def test_checking_a_clean_files_chains_quickly_reports_the_same(self, drawn) -> None:
        day0, year_start = date(2024, 3, 29), date(2024, 4, 1)
        seen = [
            (day0 + timedelta(start), None if end is None else day0 + timedelta(start + end), rne,
             "" if end is None else rec, row)
            for row, (start, end, rne, rec) in enumerate(drawn, start=2)
        ]  # fmt: skip

        def report(*, clean: bool) -> list[tuple[object, ...]]:
            broken: list[tuple[object, ...]] = []
            first = {"C1": ("1", "01/01/2010", "WBRI", "0", seen[0])}
            ssda903._check_sequences(
                first, {"C1": list(seen)}, ["C1"], year_start, lambda *e: broken.append(e), clean=clean
            )
            return sorted(broken)

        reports = [report(clean=False), report(clean=True)]
        assert reports[0] == reports[1]
        if ssda903._chained(seen, year_start):
            assert reports[0] == []

    def test_a_chain_in_row_order_is_accepted_without_the_full_check(self) -> None:
        year_start = date(2024, 4, 1)
        chain = [
            (date(2024, 1, 5), date(2024, 5, 1), "S", "X1", 2),
            (date(2024, 5, 1), date(2024, 6, 1), "P", "X1", 3),
            (date(2024, 6, 1), None, "L", "", 4),
        ]
        assert ssda903._chained(chain, year_start)
        assert not ssda903._chained(chain[:2], year_start)  # the last X1 has nothing after it
        assert not ssda903._chained([chain[0], chain[2], chain[1]], year_start)  # not in order of start


class TestPseudonymise:
    def test_the_same_salt_gives_the_same_pseudonym(self) -> None:
        assert pseudonymise("A1", la=LA, salt=SALT) == pseudonymise("A1", la=LA, salt=SALT)

    @pytest.mark.parametrize(
        ("child", "la", "salt"),
        [("A1", LA, b"another-node-salt-0123456"), ("A2", LA, SALT), ("A1", "E10000016", SALT)],
    )
    def test_another_salt_child_or_la_gives_another_pseudonym(self, child, la, salt) -> None:
        assert pseudonymise(child, la=la, salt=salt) != pseudonymise("A1", la=LA, salt=SALT)

    @pytest.mark.parametrize("salt", [SALT, b"k" * 64, b"a-very-long-salt-" * 8])
    def test_the_streaming_mac_is_hmac_sha256(self, tmp_path, salt) -> None:
        rows = [r | {"CHILD": child} for r, child in zip(BASE[:1] * 3, ("A1", "Z9", "0123456789"), strict=True)]
        rows = [r | {"DECOM": f"0{n + 1}/06/2024", "DEC": f"0{n + 2}/06/2024", "REC": "E8"} for n, r in enumerate(rows)]
        found = [e.child for e in read_episodes(io.StringIO(csv_text(rows)), la=LA, year=YEAR, salt=salt)]
        expected = [hmac.digest(salt, f"{LA}:{c}".encode(), "sha256")[:10].hex() for c in ("A1", "Z9", "0123456789")]
        assert found == expected

    def test_a_pseudonym_is_truncated_hex(self) -> None:
        pseudonym = pseudonymise("A1", la=LA, salt=SALT)
        assert len(pseudonym) == 20 and int(pseudonym, 16) >= 0

    def test_a_short_salt_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="salt"):
            pseudonymise("A1", la=LA, salt=b"short")
        with pytest.raises(ValueError, match="salt"):
            next(read_episodes(write(tmp_path, csv_text(BASE)), la=LA, year=YEAR, salt=b"short"))


class TestHelpers:
    @pytest.mark.parametrize(
        ("text", "district"),
        [("ME14 1XX", "ME14"), ("me141xx", "ME14"), ("M1 1AA", "M1"), ("M11AA", "M1"), ("EC1A 1BB", "EC1A"),
         ("CT1", "CT1"), ("ZZ99 3CZ", "ZZ99"), ("12345", None), ("ME14 1XXX", None), ("", None)],
    )  # fmt: skip
    def test_postcodes_are_cut_to_the_district(self, text, district) -> None:
        assert postcode_district(text) == district

    @pytest.mark.parametrize(
        ("code", "group"),
        [*((c, "fostering") for c in ("U1", "U2", "U3", "U4", "U5", "U6")),
         *((c, "residential") for c in ("K2", "R1", "P3", "S1")),
         *((c, "supported") for c in ("H5", "K3", "P2")),
         *((c, "other") for c in ("K1", "P1", "A3", "R2", "R5", "T0", "Z1", "Z11"))],
    )  # fmt: skip
    def test_placement_groups_are_the_demand_models(self, code, group) -> None:
        assert placement_group(code) == group

    @pytest.mark.parametrize(
        ("dob", "day", "age"),
        [(date(2010, 3, 31), date(2025, 3, 31), 15), (date(2010, 4, 1), date(2025, 3, 31), 14),
         (date(2008, 2, 29), date(2026, 2, 28), 17), (date(2008, 2, 29), date(2026, 3, 1), 18)],
    )  # fmt: skip
    def test_age_counts_completed_years(self, dob, day, age) -> None:
        assert age_on(dob, day) == age
