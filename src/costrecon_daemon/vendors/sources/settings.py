"""``[vendors]``, ``[vendors.pax8]`` and ``[vendors.ingram]``: distributor API sources.

A source is configured when its table is present; none configured = no API pulls. Secrets (client
id and secret) may come from the environment instead of the file — ``COSTRECON_PAX8_CLIENT_ID``,
``COSTRECON_PAX8_CLIENT_SECRET``, ``COSTRECON_INGRAM_CLIENT_ID``, ``COSTRECON_INGRAM_CLIENT_SECRET``
(every other key has a ``COSTRECON_<SOURCE>_<KEY>`` override too). Every error is one sentence
naming the file and the key; a secret's value is never echoed.

config.py wires this in with :func:`vendors_from_config` and, for the file-permission rule,
:func:`file_holds_vendor_secrets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from costrecon_daemon.config import ConfigError
from costrecon_daemon.money import MoneyError, normalise_currency

__all__ = [
    "IngramSettings",
    "Pax8Settings",
    "VendorsSection",
    "file_holds_vendor_secrets",
    "vendors_from_config",
]

SECRET_KEYS = frozenset({"client_id", "client_secret"})


@dataclass(frozen=True, slots=True)
class Pax8Settings:
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    base_url: str = "https://api.pax8.com/v1"
    token_url: str = ""  # default: base_url + "/token" (Pax8's CLI does the same, §1.1)
    audience: str = "https://api.pax8.com"
    pull_every_hours: float = 24.0
    page_size: int = 200  # the documented maximum (§1.4)
    concurrency: int = 8
    requests_per_minute: int = 1000  # token calls included (§1.11)
    currency: str = "USD"  # pricing carries no currency: the partner's billing currency (§1.6)
    company_id: str = ""  # company-specific pricing (optional)
    timeout: float = 30.0
    max_retries: int = 5
    retry_backoff: float = 0.5

    @property
    def effective_token_url(self) -> str:
        return self.token_url or f"{self.base_url.rstrip('/')}/token"


@dataclass(frozen=True, slots=True)
class IngramSettings:
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    customer_number: str = ""
    country_code: str = "US"
    sender_id: str = "costrecon"
    base_url: str = "https://api.ingrammicro.com:443"
    sandbox: bool = False  # /sandbox before /resellers/... (the token endpoint is shared, §2.2)
    pull_every_hours: float = 24.0
    batch_size: int = 50  # products per price-and-availability POST; the API allows 50 (§2.5)
    concurrency: int = 4
    get_requests_per_minute: int = 60  # per endpoint (§2.8)
    post_requests_per_minute: int = 0  # 0 = not limited here (the P&A POST limit is unpublished)
    timeout: float = 30.0
    max_retries: int = 5
    retry_backoff: float = 0.5

    @property
    def resellers_root(self) -> str:
        root = self.base_url.rstrip("/")
        return f"{root}/sandbox" if self.sandbox else root

    @property
    def token_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/oauth/oauth20/token"


@dataclass(frozen=True, slots=True)
class VendorsSection:
    pull_every_hours: float = 24.0
    pax8: Pax8Settings | None = None
    ingram: IngramSettings | None = None

    @property
    def configured(self) -> tuple[str, ...]:
        return tuple(n for n in ("pax8", "ingram") if getattr(self, n) is not None)


_CLASSES: dict[str, type] = {"pax8": Pax8Settings, "ingram": IngramSettings}
_WHERE = {
    "pax8": "the Pax8 app under Integrations > API credentials",
    "ingram": "your app on developer.ingrammicro.com (My Apps)",
}


def file_holds_vendor_secrets(raw: Mapping[str, Any]) -> bool:
    """True when the parsed file puts a vendor client id or secret in ``[vendors.*]`` (the
    file must then be private, as for PSA secrets)."""
    vendors = raw.get("vendors")
    if not isinstance(vendors, Mapping):
        return False
    return any(
        isinstance(table, Mapping) and any(table.get(k) for k in SECRET_KEYS)
        for table in vendors.values()
    )


def _convert(file: str, key: str, value: Any, ftype: str, secret: bool) -> Any:
    shown = "a value that is not text" if secret else repr(value)
    if ftype.startswith("bool"):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key} must be true or false, got {shown}.")
        return value
    if ftype.startswith("int"):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: {key} must be a whole number, got {shown}.")
        return value
    if ftype.startswith("float"):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{file}: {key} must be a number, got {shown}.")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{file}: {key} must be a string in quotes, got {shown}.")
    return value.strip()


def _source(file: str, name: str, table: Any, env: Mapping[str, str], default_hours: float) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{file}: [vendors.{name}] must be a table.")
    cls = _CLASSES[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {"pull_every_hours": default_hours}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{file}: unknown key vendors.{name}.{key}; expected one of: "
                f"{', '.join(sorted(fields))}."
            )
        values[key] = value
    prefix = f"COSTRECON_{name.upper()}_"
    for key in fields:
        if (from_env := env.get(prefix + key.upper())) is not None:
            values[key] = from_env
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key] = _convert(
            file, f"vendors.{name}.{key}", value, str(fields[key].type), key in SECRET_KEYS
        )
    missing = [k for k in ("client_id", "client_secret") if not out.get(k)]
    if name == "ingram" and not out.get("customer_number"):
        missing.append("customer_number")
    if missing:
        hints = " and ".join(f"vendors.{name}.{k} (or {prefix}{k.upper()})" for k in missing)
        raise ConfigError(
            f"{file}: [vendors.{name}] needs {hints}; create the credentials in {_WHERE[name]}."
        )
    _validate(file, name, out)
    return cls(**out)


def _validate(file: str, name: str, v: dict[str, Any]) -> None:
    for key in ("base_url", "token_url"):
        url = v.get(key)
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    f"{file}: vendors.{name}.{key} must be an http(s) URL, got {url!r}."
                )
    if v["pull_every_hours"] <= 0:
        raise ConfigError(f"{file}: vendors.{name}.pull_every_hours must be greater than 0.")
    for key in ("concurrency", "max_retries"):
        if key in v and v[key] < (1 if key == "concurrency" else 0):
            raise ConfigError(f"{file}: vendors.{name}.{key} must be at least 1.")
    if name == "pax8":
        if not 1 <= v.get("page_size", 200) <= 200:
            raise ConfigError(f"{file}: vendors.pax8.page_size must be between 1 and 200.")
        if v.get("requests_per_minute", 1000) < 1:
            raise ConfigError(f"{file}: vendors.pax8.requests_per_minute must be at least 1.")
        try:
            v["currency"] = normalise_currency(v.get("currency", "USD"))
        except MoneyError as exc:
            raise ConfigError(f"{file}: vendors.pax8.currency: {exc}.") from None
    else:
        if not 1 <= v.get("batch_size", 50) <= 50:
            raise ConfigError(
                f"{file}: vendors.ingram.batch_size must be between 1 and 50 "
                "(Ingram prices at most 50 products per call)."
            )
        if len(v["customer_number"]) > 10:
            raise ConfigError(
                f"{file}: vendors.ingram.customer_number must be at most 10 characters "
                "(as shown in Xvantage, e.g. 20-222222)."
            )
        code = v.get("country_code", "US")
        if len(code) != 2 or not code.isalpha():
            raise ConfigError(
                f"{file}: vendors.ingram.country_code must be a two-letter country code such as "
                f"US, got {code!r}."
            )
        v["country_code"] = code.upper()
        if len(v.get("sender_id", "")) > 32:
            raise ConfigError(f"{file}: vendors.ingram.sender_id must be at most 32 characters.")
        if v.get("get_requests_per_minute", 60) < 1:
            raise ConfigError(f"{file}: vendors.ingram.get_requests_per_minute must be at least 1.")


def vendors_from_config(
    raw: Mapping[str, Any], env: Mapping[str, str], file: str = "config"
) -> VendorsSection:
    """Validate the ``[vendors]`` table of a parsed config file (``raw`` is the whole file)."""
    table = raw.get("vendors", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{file}: [vendors] must be a table.")
    hours: Any = table.get("pull_every_hours", 24.0)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        raise ConfigError(
            f"{file}: vendors.pull_every_hours must be a number of hours greater than 0, "
            f"got {hours!r}."
        )
    for key in table:
        if key not in ("pull_every_hours", "pax8", "ingram"):
            raise ConfigError(
                f"{file}: unknown key vendors.{key}; expected pull_every_hours, [vendors.pax8] "
                "or [vendors.ingram]."
            )
    sources = {
        name: _source(file, name, table[name], env, float(hours))
        for name in ("pax8", "ingram")
        if name in table
    }
    return VendorsSection(pull_every_hours=float(hours), **sources)
