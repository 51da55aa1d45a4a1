from __future__ import annotations

from pathlib import Path

import pytest

from registry.core.settings import SettingsError, load_settings, write_config


class TestLoadSettings:
    def test_defaults_give_a_regional_node_on_embedded_sqlite(self, tmp_path: Path) -> None:
        settings = load_settings(data_dir=tmp_path)
        assert settings.kind == "regional"
        assert settings.effective_database_url == f"sqlite:///{tmp_path.as_posix()}/node.db"
        assert settings.max_body_bytes == 1024 * 1024
        assert settings.effective_key_dir == tmp_path / "keys"

    def test_toml_file_is_read_and_environment_overrides_it(self, tmp_path: Path, monkeypatch) -> None:
        write_config(
            tmp_path / "node.toml",
            {"node_id": "rcc-gm", "name": "Greater Manchester", "port": 9001, "region_code": "E12000002"},
        )
        monkeypatch.setenv("RCC_PORT", "9002")
        settings = load_settings(data_dir=tmp_path)
        assert (settings.node_id, settings.name, settings.region_code) == (
            "rcc-gm",
            "Greater Manchester",
            "E12000002",
        )
        assert settings.port == 9002

    def test_config_file_elsewhere_puts_data_dir_beside_it(self, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.delenv("RCC_DATA_DIR", raising=False)
        write_config(tmp_path / "custom.toml", {"node_id": "rcc-ldn", "region_code": "E12000007"})
        settings = load_settings(config=tmp_path / "custom.toml")
        assert settings.data_dir == tmp_path
        assert settings.node_id == "rcc-ldn"

    def test_base_url_loses_its_trailing_slash(self, tmp_path: Path) -> None:
        assert load_settings(data_dir=tmp_path, base_url="https://se.example/").base_url == "https://se.example"

    @pytest.mark.parametrize(
        ("overrides", "setting"),
        [
            ({"node_id": "Not An Id"}, "node_id"),
            ({"region_code": "E13000001"}, "region_code"),
            ({"kind": "county"}, "kind"),
            ({"base_url": "ftp://x"}, "base_url"),
            ({"port": 70000}, "port"),
            ({"max_body_bytes": 10}, "max_body_bytes"),
            ({"kind": "regional", "region_code": None}, "region_code"),
        ],
    )
    def test_invalid_settings_fail_naming_the_setting(self, tmp_path: Path, overrides, setting: str) -> None:
        with pytest.raises(SettingsError) as raised:
            load_settings(data_dir=tmp_path, **overrides)
        assert setting in raised.value.problems
        assert f"setting {setting}" in str(raised.value)

    def test_national_node_needs_no_region(self, tmp_path: Path) -> None:
        assert load_settings(data_dir=tmp_path, kind="national", region_code=None).region_code is None

    def test_missing_config_file_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(SettingsError, match="config"):
            load_settings(config=tmp_path / "absent.toml")

    def test_invalid_environment_value_is_named(self, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.setenv("RCC_PORT", "eighty")
        with pytest.raises(SettingsError) as raised:
            load_settings(data_dir=tmp_path)
        assert "port" in raised.value.problems
