"""Configuration loading: defaults, the documented example, and errors naming the key."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest

from bounced.config import (
    Config,
    ConfigError,
    HttpToken,
    SmppAccount,
    WebhookConfig,
    config_from_mapping,
    load_config,
)
from bounced.core.times import parse_duration
from tests.paths import ROOT

EXAMPLE = ROOT / "config" / "bounced.toml"


def test_the_documented_example_loads_and_matches_the_built_in_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_the_documented_example_shows_every_setting() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = tomllib.loads(text)
    for section in fields(Config):
        default = getattr(Config(), section.name)
        if isinstance(default, tuple):  # an array of tables: a commented-out example
            continue
        keys = {f.name for f in fields(default) if not isinstance(getattr(default, f.name),
                                                                  tuple) or f.name != "tokens"}
        assert keys - set(documented.get(section.name, {})) == set(), section.name


@pytest.mark.parametrize(("table", "cls"), [("http.tokens", HttpToken),
                                            ("webhooks", WebhookConfig),
                                            ("smpp", SmppAccount)])
def test_the_documented_example_shows_every_key_of_its_arrays_of_tables(
        table: str, cls: type) -> None:
    """Arrays of tables are empty by default, so the example shows one commented out."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index(f"# [[{table}]]")
    example = text[start:text.find("\n\n", start) % (len(text) + 1)]
    for key in (f.name for f in fields(cls)):
        assert f"# {key} = " in example, key


def test_no_file_means_the_embedded_defaults() -> None:
    config = load_config(None)
    assert config.database.path == "bounced.db"
    assert config.smtp.listen == "127.0.0.1:2525"
    assert config.policy.soft_error_threshold == 5


def test_a_file_only_needs_the_keys_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "bounced.toml"
    path.write_text('[policy]\nsoft_error_threshold = 3\nsoft_error_interval = "12h"\n')
    config = load_config(path)
    assert config.policy.soft_error_threshold == 3
    assert config.policy.soft_error_interval == timedelta(hours=12)
    assert config.policy.counter_reset_after == timedelta(days=10)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"policy": {"soft_error_threshold": "five"}}, "policy.soft_error_threshold", "integer"),
        ({"policy": {"soft_error_threshold": 0}}, "policy.soft_error_threshold", ">= 1"),
        ({"policy": {"soft_eror_threshold": 5}}, "policy.soft_eror_threshold", "unknown setting"),
        ({"polcy": {}}, "polcy", "unknown section"),
        ({"policy": {"counter_reset_after": 10}}, "policy.counter_reset_after", "duration"),
        ({"smtp": {"bounce_domains": "example.com"}}, "smtp.bounce_domains", "list of strings"),
        ({"logging": {"format": "xml"}}, "logging.format", "one of auto, json, console"),
        ({"verp": {"separator": "+-"}}, "verp.separator", "one character"),
        ({"smtp": "yes"}, "smtp", "table"),
        ({"database": {"cache_mb": 0}}, "database.cache_mb", ">= 1"),
        ({"database": {"prewarm": "yes"}}, "database.prewarm", "true or false"),
        ({"database": {"wal_limit_mb": 0}}, "database.wal_limit_mb", ">= 1"),
        ({"database": {"wal_warn_mb": "1G"}}, "database.wal_warn_mb", "integer"),
        ({"storage": {"min_free_mb": -1}}, "storage.min_free_mb", "integer >= 0"),
        ({"storage": {"min_free": 1}}, "storage.min_free", "unknown setting"),
        ({"smtp": {"stress_timeout": 10}}, "smtp.stress_timeout", "duration"),
        ({"smtp": {"timeout": "0s"}}, "smtp.timeout", "duration > 0"),
        ({"smtp": {"idle_session_limit": "0s"}}, "smtp.idle_session_limit", "duration > 0"),
        ({"smtp": {"min_data_rate": 0}}, "smtp.min_data_rate", ">= 1"),
        ({"smtp": {"max_connections": 0}}, "smtp.max_connections", ">= 1"),
        ({"smtp": {"max_connections_per_client": "50"}}, "smtp.max_connections_per_client",
         "integer"),
        ({"smtp": {"connection_rate_per_client": 1.5}}, "smtp.connection_rate_per_client",
         "integer"),
        ({"smtp": {"max_junk_commands": True}}, "smtp.max_junk_commands", "integer"),
    ],
)
def test_a_wrong_value_is_reported_with_its_key_and_what_was_expected(
    data: dict, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_mapping(data)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"{key}: ")
    assert expected in str(raised.value)


def test_a_file_that_is_not_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[policy\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "value"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
     ("24h", timedelta(hours=24)), ("10d", timedelta(days=10)), ("1.5h", timedelta(minutes=90)),
     ("2w", timedelta(weeks=2))],
)
def test_durations_take_a_unit(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["10", "ten days", "3y", "5 fortnights", ""])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_hostile_input_limits_have_defaults_that_leave_room_for_other_clients() -> None:
    smtp = Config().smtp
    assert 0 < smtp.max_connections_per_client <= smtp.max_connections // 4
    assert smtp.stress_timeout < smtp.timeout
    assert Config().storage.min_free_mb == 256
    assert Config().database.wal_limit_mb < Config().database.wal_warn_mb


def test_a_stress_timeout_longer_than_the_timeout_is_capped_by_it() -> None:
    from bounced.daemon.receive import SessionLimits

    config = config_from_mapping({"smtp": {"timeout": "2s", "stress_timeout": "10s"}})
    assert SessionLimits.from_smtp(config.smtp).stress_timeout == 2.0


def test_the_documented_smpp_example_loads_once_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("# [[smpp]]")
    lines = [line[2:] for line in text[start:].splitlines()
             if (line.startswith("# ") and " = " in line) or line == "# [[smpp]]"]
    example = "\n".join(line for line in lines if not line.startswith("password ="))
    (tmp_path / "acme.password").write_text("secret\n")
    (tmp_path / "bounced.toml").write_text(example + "\n")
    [account] = load_config(tmp_path / "bounced.toml").smpp
    assert (account.name, account.password, account.bind) == ("acme", "secret", "receiver")
    assert account.status_regex == r"\bstat:(\S*)"


@pytest.mark.parametrize(("table", "key"), [
    ({"name": "a", "host": "h", "system_id": "s", "bind": "transmitter"}, "smpp[0].bind"),
    ({"name": "a", "host": "h", "system_id": "s", "password": "toolongpassword"},
     "smpp[0].password"),
    ({"name": "a", "host": "h", "system_id": "s", "status_regex": "(unclosed"},
     "smpp[0].status_regex"),
    ({"name": "a", "system_id": "s"}, "smpp[0].host"),
])
def test_a_wrong_smpp_account_names_its_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_mapping({"smpp": [table]})
    assert error.value.key == key


def test_an_unknown_phone_region_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        config_from_mapping({"addresses": {"phone_region": "XX"}})
    assert error.value.key == "addresses.phone_region"
