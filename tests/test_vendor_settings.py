"""``[vendors]`` settings: optional sources, secrets from the environment, one-sentence errors
that never echo a secret (issue 16 item 1)."""

from __future__ import annotations

import tomllib

import pytest

from costrecon_daemon.config import ConfigError
from costrecon_daemon.vendors.sources.settings import (
    file_holds_vendor_secrets,
    vendors_from_config,
)


def load(text: str, env: dict[str, str] | None = None):
    return vendors_from_config(tomllib.loads(text), env or {}, "config.toml")


def test_no_vendor_table_means_no_api_sources():
    section = load('[inbox]\npath = "/tmp/x"\n')
    assert section.configured == () and section.pull_every_hours == 24.0


def test_secrets_come_from_the_environment_and_defaults_fill_the_rest():
    env = {
        "COSTRECON_PAX8_CLIENT_ID": "id-from-env",
        "COSTRECON_PAX8_CLIENT_SECRET": "secret-from-env",
        "COSTRECON_INGRAM_CLIENT_ID": "im-id",
        "COSTRECON_INGRAM_CLIENT_SECRET": "im-secret",
    }
    section = load(
        "[vendors]\npull_every_hours = 6\n[vendors.pax8]\n[vendors.ingram]\ncustomer_number = "
        '"20-222222"\n',
        env,
    )
    assert section.configured == ("pax8", "ingram")
    pax8 = section.pax8
    assert pax8 is not None and pax8.client_id == "id-from-env"
    assert pax8.base_url == "https://api.pax8.com/v1" and pax8.page_size == 200
    assert pax8.effective_token_url == "https://api.pax8.com/v1/token"
    assert pax8.pull_every_hours == 6.0  # the [vendors] default applies to each source
    ingram = section.ingram
    assert ingram is not None and ingram.batch_size == 50 and ingram.country_code == "US"
    assert ingram.token_url == "https://api.ingrammicro.com:443/oauth/oauth20/token"
    assert "secret-from-env" not in repr(section)


def test_missing_credentials_name_the_keys_the_variables_and_the_portal():
    with pytest.raises(ConfigError) as err:
        load("[vendors.pax8]\n")
    message = str(err.value)
    assert message.startswith("config.toml: [vendors.pax8] needs vendors.pax8.client_id")
    assert "COSTRECON_PAX8_CLIENT_SECRET" in message and "Integrations > API credentials" in message
    with pytest.raises(ConfigError, match="customer_number"):
        load('[vendors.ingram]\nclient_id = "a"\nclient_secret = "b"\n')


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[vendors.pax8]\nclient_id = "a"\nclient_secret = "b"\npage_size = 500\n', "page_size"),
        ('[vendors.pax8]\nclient_id = "a"\nclient_secret = "b"\nbase_url = "ftp://x"\n', "http"),
        ('[vendors.pax8]\nclient_id = "a"\nclient_secret = "b"\nsurprise = 1\n', "unknown key"),
        ("[vendors]\npull_every_hours = 0\n", "greater than 0"),
        ("[vendors]\nbogus = 1\n", "unknown key vendors.bogus"),
        (
            '[vendors.ingram]\nclient_id = "a"\nclient_secret = "b"\ncustomer_number = "1"\n'
            "batch_size = 51\n",
            "at most 50",
        ),
        (
            '[vendors.ingram]\nclient_id = "a"\nclient_secret = "b"\ncustomer_number = "1"\n'
            'country_code = "USA"\n',
            "two-letter",
        ),
    ],
)
def test_bad_values_are_refused_in_one_sentence(table: str, expected: str):
    with pytest.raises(ConfigError) as err:
        load(table)
    message = str(err.value)
    assert expected in message and message.count(". ") == 0 and message.endswith(".")


def test_a_secret_that_is_not_text_is_not_echoed():
    with pytest.raises(ConfigError) as err:
        load('[vendors.pax8]\nclient_id = "a"\nclient_secret = 123456789\n')
    assert "123456789" not in str(err.value)


def test_the_file_permission_rule_knows_when_a_file_holds_vendor_secrets():
    assert file_holds_vendor_secrets(tomllib.loads('[vendors.pax8]\nclient_secret = "s"\n'))
    assert not file_holds_vendor_secrets(tomllib.loads("[vendors.pax8]\npage_size = 100\n"))
    assert not file_holds_vendor_secrets({})


def test_the_daemon_config_loads_vendor_tables_and_refuses_a_readable_file_with_their_secrets(
    tmp_path,
):
    from costrecon_daemon.config import load_config

    path = tmp_path / "config.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{tmp_path}"\n[vendors]\npull_every_hours = 6\n'
        '[vendors.pax8]\nclient_id = "cid"\nclient_secret = "s3cr3t-value"\n'
    )
    path.chmod(0o600)
    cfg = load_config(path, env={})
    assert cfg.vendors.configured == ("pax8",) and cfg.vendors.pax8.pull_every_hours == 6.0
    path.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert "vendor API secrets" in message and "chmod 600" in message
    assert "s3cr3t-value" not in message and "\n" not in message


def test_a_typo_in_a_vendor_table_stops_the_daemon_config_with_one_sentence(tmp_path):
    from costrecon_daemon.config import load_config

    path = tmp_path / "config.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n[vendors.pax8]\nclient_idd = "x"\n')
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "vendors.pax8.client_idd" in str(err.value) and "\n" not in str(err.value)
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert load_config(path, env={}).vendors.configured == ()  # none configured: files only
