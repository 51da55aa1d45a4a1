"""Synthetic episode files: valid, deterministic, and shaped like the national picture."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from registry.statistics.catalogue import CEASED, LOOKED_AFTER, STARTED, counted
from registry.statistics.ssda903 import read_episodes, validate_file
from registry.statistics.synth import COLUMNS, write_episodes

KENT, MEDWAY, MANCHESTER = "E10000016", "E06000035", "E08000003"
SALT = b"synth-test-salt-0123456789"


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def by_la(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list]]:
    """What each catalogue measure counts, for Kent (an entry authority) and Medway."""
    tmp = tmp_path_factory.mktemp("synth")
    out = {}
    for la in (KENT, MEDWAY):
        path = tmp / f"{la}.csv"
        write_episodes(path, la=la, year=2025, children=1500, seed=3)
        out[la] = counted(read_episodes(path, la=la, year=2025, salt=SALT), year=2025, las=[la])
    return out


class TestWriteEpisodes:
    @pytest.mark.parametrize(("la", "year"), [(MEDWAY, 2024), (KENT, 2025), (MANCHESTER, 2026), ("E09000008", 2025)])
    def test_files_validate_with_no_errors(self, tmp_path, la, year) -> None:
        path = tmp_path / "synthetic.csv"
        written = write_episodes(path, la=la, year=year, children=400, seed=1)
        assert validate_file(path, la, year) == []
        assert written == len(rows_of(path)) > 400  # several episodes for some children

    def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(self, tmp_path: Path) -> None:
        paths = [tmp_path / f"{n}.csv" for n in range(3)]
        for path, seed in zip(paths, (7, 7, 8), strict=True):
            write_episodes(path, la=MEDWAY, year=2025, children=150, seed=seed)
        assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()

    def test_the_header_is_the_parsers_columns(self, tmp_path: Path) -> None:
        path = tmp_path / "synthetic.csv"
        write_episodes(path, la=MEDWAY, year=2025, children=1, seed=1)
        assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)

    @pytest.mark.parametrize(
        ("year", "sexes", "absent"),
        [(2024, {"1", "2"}, {"K3", "Z11"}), (2026, {"M", "F", "U"}, {"H5", "P2", "Z1"})],
    )
    def test_codes_follow_the_collection_year(self, tmp_path, year, sexes, absent) -> None:
        path = tmp_path / "synthetic.csv"
        write_episodes(path, la=MEDWAY, year=year, children=800, seed=2)
        rows = rows_of(path)
        assert {r["SEX"] for r in rows} <= sexes
        assert not absent & {r["PLACE"] for r in rows}

    def test_an_unknown_la_or_negative_count_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="local authority"):
            write_episodes(tmp_path / "x.csv", la="E99999999", year=2025, children=1, seed=1)
        with pytest.raises(ValueError, match="negative"):
            write_episodes(tmp_path / "x.csv", la=MEDWAY, year=2025, children=-1, seed=1)


class TestDistributions:
    def test_the_placement_mix_is_mostly_fostering(self, by_la) -> None:
        cla = by_la[MEDWAY][LOOKED_AFTER]
        share = {group: n / len(cla) for group, n in Counter(e.placement_group for e in cla).items()}
        assert 0.62 <= share["fostering"] <= 0.78
        assert 0.10 <= share["residential"] <= 0.22
        assert 0.03 <= share["supported"] <= 0.13
        assert 0.02 <= share["other"] <= 0.12

    def test_ages_skew_to_ten_and_over(self, by_la) -> None:
        cla = by_la[MEDWAY][LOOKED_AFTER]
        assert 0.5 <= sum(e.age_at_31_march >= 10 for e in cla) / len(cla) <= 0.75

    def test_unaccompanied_children_concentrate_in_entry_authorities(self, by_la) -> None:
        uasc = {la: sum(e.uasc for e in found[LOOKED_AFTER]) / len(found[LOOKED_AFTER]) for la, found in by_la.items()}
        assert 0.02 <= uasc[MEDWAY] <= 0.10
        assert uasc[KENT] > 3 * uasc[MEDWAY]

    def test_children_start_and_cease_in_the_year(self, by_la) -> None:
        found = by_la[MEDWAY]
        assert 0.2 <= len(found[STARTED]) / 1500 <= 0.5
        assert 0.2 <= len(found[CEASED]) / 1500 <= 0.5
