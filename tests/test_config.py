"""Config loading: embedded defaults, strict validation with one clear sentence, secrets safety."""

from __future__ import annotations

import pytest

from costrecon_daemon.config import ConfigError, load_config

from .harness import write_config


def test_no_config_file_means_embedded_defaults(tmp_path):
    cfg = load_config(None, env={})
    assert cfg.psa.kind == "none"
    assert cfg.database_url.startswith("sqlite:///")
    assert cfg.sync.interval_minutes > 0


def test_explicit_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="absent.toml: no such config file"):
        load_config(tmp_path / "absent.toml", env={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[daemon]\nlog_levle = 'info'\n", "unknown key daemon.log_levle; expected one of"),
        ("[sync]\ninterval_minutes = 'often'\n", "sync.interval_minutes must be a number"),
        ("[inbox]\nforce_polling = 'yes'\n", "inbox.force_polling must be true or false"),
        ("[bogus]\nx = 1\n", "unknown section [bogus]"),
        ("[psa]\nkind = 'halopsa'\n", "psa.kind must be one of"),
        ("[push]\nline_policy = 'some'\n", "push.line_policy must be"),
        ("[daemon\n", "not valid TOML"),
    ],
)
def test_bad_config_gets_one_sentence_naming_file_and_key(tmp_path, toml, message):
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_required_psa_setting_names_the_key_and_env_var(tmp_path):
    path = write_config(
        tmp_path / "c.toml",
        {
            "psa": {"kind": "connectwise"},
            "psa.connectwise": {
                "site": "https://api-na.myconnectwise.net",
                "company": "acme",
                "public_key": "pub",
                "client_id": "abc",
            },
        },
    )
    with pytest.raises(
        ConfigError, match=r"missing psa\.connectwise\.private_key \(or COSTRECON_PSA_PRIVATE_KEY\)"
    ):
        load_config(path, env={})


def test_secret_from_environment_completes_the_config(tmp_path):
    path = write_config(
        tmp_path / "c.toml",
        {
            "psa": {"kind": "connectwise"},
            "psa.connectwise": {
                "site": "https://x",
                "company": "acme",
                "public_key": "pub",
                "client_id": "abc",
            },
        },
    )
    cfg = load_config(path, env={"COSTRECON_PSA_PRIVATE_KEY": "s3cret"})
    assert cfg.psa.settings["private_key"] == "s3cret"


def test_world_readable_file_with_secrets_is_refused_with_the_fix(tmp_path):
    path = write_config(
        tmp_path / "c.toml",
        {
            "psa": {"kind": "connectwise"},
            "psa.connectwise": {
                "site": "https://x",
                "company": "acme",
                "public_key": "pub",
                "private_key": "s3cret",
                "client_id": "abc",
            },
        },
    )
    path.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert f"chmod 600 {path}" in str(err.value)
    assert "s3cret" not in str(err.value)
    path.chmod(0o600)
    assert load_config(path, env={}).psa.kind == "connectwise"


@pytest.mark.slow
def test_daemon_cli_prints_config_errors_without_traceback(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "c.toml"
    path.write_text("[daemon]\nstate_dri = '/tmp/x'\n")
    r = subprocess.run(
        [sys.executable, "-m", "costrecon_daemon.cli", "-c", str(path), "status"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "unknown key daemon.state_dri" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path):
    path = write_config(
        tmp_path / "c.toml",
        {
            "psa": {"kind": "connectwise"},
            "psa.connectwise": {
                "site": "https://x",
                "company": "acme",
                "public_key": "pub",
                "private_key": 987654321,
                "client_id": "abc",
            },
        },
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "psa.connectwise.private_key must be a string" in str(err.value)
    assert "987654321" not in str(err.value)


def test_the_example_config_loads_as_shipped(tmp_path):
    import shutil
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    copy = tmp_path / "config.toml"
    shutil.copy(example, copy)
    copy.chmod(0o600)
    cfg = load_config(copy, env={})
    assert cfg.psa.kind == "none" and cfg.push.line_policy == "all"
