"""Configuration: one TOML file, strictly validated, with embedded defaults (config.example.toml).

Every error names the file, the key and what was expected, in one sentence. Secrets may come
from environment variables instead of the file; a file that holds secrets and can be read by
group or others is refused (DESIGN.md §3 "Secrets").
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import math
import os
import pwd
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

APP = "costrecon"
CONFIG_ENV = "COSTRECON_CONFIG"
PSA_KINDS = ("none", "connectwise", "autotask", "syncro")
# Fields of the PSA settings that are secrets: never logged, never shown, env-overridable.
SECRET_FIELDS = frozenset({"private_key", "secret", "api_token", "integration_code", "public_key"})


class ConfigError(Exception):
    """Bad configuration; ``str()`` is the one sentence to show."""


def config_search_path() -> Path:
    """Where the config file is looked for (one function so tests can redirect it)."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return platformdirs.user_config_path(APP, appauthor=False) / "config.toml"


@dataclass(slots=True)
class DaemonSection:
    state_dir: Path = field(
        default_factory=lambda: platformdirs.user_state_path(APP, appauthor=False)
    )
    runtime_dir: Path | None = None
    database_url: str = ""
    log_level: str = "info"
    log_file: str = ""
    allowed_users: list[str] = field(default_factory=list)
    allowed_groups: list[str] = field(default_factory=list)
    socket_group: str = ""
    activity_key_file: str = ""
    # How this daemon is named where several share one database (activity actors "user@name",
    # the leader shown in status); empty = the host name.
    name: str = ""


@dataclass(slots=True)
class SyncSection:
    interval_minutes: float = 15.0
    full_every_hours: float = 24.0
    on_start: bool = True


@dataclass(slots=True)
class InboxSection:
    path: str = ""
    processed_dir: str = ""
    failed_dir: str = ""
    stable_seconds: float = 2.0
    rescan_seconds: float = 60.0
    force_polling: bool = False
    default_currency: str = "USD"
    default_profile: str = ""
    # Imports per vendor whose unmatched rows are kept; older ones keep only matched rows.
    keep_imports: int = 3


@dataclass(slots=True)
class PushSection:
    line_policy: str = "all"  # all | matching
    # percent: a change that takes any contract line's margin below this is flagged in the table
    # and listed in the approval preview
    margin_floor: float = 20.0


@dataclass(slots=True)
class TuiSection:
    # a manual vendor cost that moves the catalogue cost by more than this (or to zero) is asked
    # about a second time in the TUI
    confirm_change_pct: float = 50.0


@dataclass(slots=True)
class PSASection:
    kind: str = "none"
    settings: dict[str, Any] = field(default_factory=dict)  # the [psa.<kind>] table, validated


@dataclass(slots=True)
class Config:
    path: Path | None
    daemon: DaemonSection = field(default_factory=DaemonSection)
    sync: SyncSection = field(default_factory=SyncSection)
    inbox: InboxSection = field(default_factory=InboxSection)
    push: PushSection = field(default_factory=PushSection)
    tui: TuiSection = field(default_factory=TuiSection)
    psa: PSASection = field(default_factory=PSASection)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    # [vendors]: distributor API sources (vendors/sources/settings.py VendorsSection); None
    # until load_config fills it, which it always does.
    vendors: Any = None

    # ---- derived paths: everything can be overridden, nothing is hard-coded elsewhere

    @property
    def state_dir(self) -> Path:
        return Path(self.daemon.state_dir).expanduser()

    @property
    def runtime_dir(self) -> Path:
        if self.daemon.runtime_dir:
            return Path(self.daemon.runtime_dir).expanduser()
        return default_runtime_dir()

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "costrecond.sock"

    @property
    def lock_path(self) -> Path:
        # The lock lives in the state dir: one daemon per database, whatever the socket path.
        return self.state_dir / "costrecond.lock"

    @property
    def database_url(self) -> str:
        return self.daemon.database_url or f"sqlite:///{self.state_dir / 'costrecon.db'}"

    @property
    def log_file(self) -> Path:
        return (
            Path(self.daemon.log_file).expanduser()
            if self.daemon.log_file
            else self.state_dir / "logs" / "costrecond.log"
        )

    def _dir(self, value: str, default: str) -> Path:
        return Path(value).expanduser() if value else self.state_dir / default

    @property
    def inbox_dir(self) -> Path:
        return self._dir(self.inbox.path, "inbox")

    @property
    def processed_dir(self) -> Path:
        return self._dir(self.inbox.processed_dir, "processed")

    @property
    def failed_dir(self) -> Path:
        return self._dir(self.inbox.failed_dir, "failed")


def default_runtime_dir() -> Path:
    """The socket's directory: $XDG_RUNTIME_DIR/costrecon when usable, else a per-user tmp dir."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir() and os.access(xdg, os.W_OK):
        return Path(xdg) / APP
    return Path("/tmp") / f"{APP}-{os.getuid()}"


# ---------------------------------------------------------------- loading

_SECTIONS: dict[str, type] = {
    "daemon": DaemonSection,
    "sync": SyncSection,
    "inbox": InboxSection,
    "push": PushSection,
    "tui": TuiSection,
}

_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _expect(file: str, key: str, value: Any, typ: Any) -> Any:
    """Check ``value`` against a dataclass field type; return it converted."""
    origin = getattr(typ, "__origin__", None)
    if typ in (Path, "Path") or str(typ).startswith("pathlib.Path") or typ == "Path | None":
        if not isinstance(value, str):
            raise ConfigError(f"{file}: {key} must be a path in quotes, got {value!r}.")
        return Path(value).expanduser()
    if origin is list or str(typ).startswith("list"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{file}: {key} must be a list of strings, got {value!r}.")
        return value
    if typ in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{file}: {key} must be a number, got {value!r}.")
        if not math.isfinite(value):
            # TOML allows nan and inf; an infinite interval silently stops the sync loop.
            raise ConfigError(f"{file}: {key} must be a finite number, got {value!r}.")
        return float(value)
    if typ in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: {key} must be a whole number, got {value!r}.")
        return value
    if typ in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key} must be true or false, got {value!r}.")
        return value
    if typ in (str, "str"):
        if not isinstance(value, str):
            raise ConfigError(f"{file}: {key} must be a string in quotes, got {value!r}.")
        return value
    return value


def _fill(file: str, section: str, obj: Any, table: Any) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [{section}] must be a table.")
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{file}: unknown key {section}.{key}; expected one of: {', '.join(sorted(known))}."
            )
        setattr(obj, key, _expect(file, f"{section}.{key}", value, known[key].type))


def psa_settings_class(kind: str) -> type:
    """The connector's settings dataclass for ``kind`` (psa/registry.py)."""
    from .psa import registry

    try:
        return registry.settings_class(kind)
    except ValueError as exc:  # pragma: no cover - guarded by PSA_KINDS
        raise ConfigError(str(exc)) from None


def _psa(file: str, table: Any, env: dict[str, str]) -> PSASection:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [psa] must be a table.")
    kind = table.get("kind", "none")
    if kind not in PSA_KINDS:
        raise ConfigError(f"{file}: psa.kind must be one of {', '.join(PSA_KINDS)}, got {kind!r}.")
    for key in table:
        if key != "kind" and key not in PSA_KINDS[1:]:
            raise ConfigError(
                f"{file}: unknown key psa.{key}; expected kind and a [psa.{kind}] table."
            )
    if kind == "none":
        return PSASection()
    sub = dict(table.get(kind) or {})
    # Environment overrides for secrets and everything else: COSTRECON_PSA_<FIELD>.
    cls = psa_settings_class(kind)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in fields:
        env_value = env.get(f"COSTRECON_PSA_{name.upper()}")
        if env_value is not None:
            sub[name] = env_value
    for key, value in sub.items():
        if key not in fields:
            raise ConfigError(
                f"{file}: unknown key psa.{kind}.{key}; expected one of: "
                f"{', '.join(sorted(fields))}."
            )
        ftype = fields[key].type
        ftext = str(ftype)
        if "int" in ftext and "float" not in ftext and isinstance(value, str) and value.isdigit():
            value = int(value)
        if "float" in ftext and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if "float" in ftext and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (
            "bool" in ftext
            and isinstance(value, str)
            and value.lower() in ("true", "false", "1", "0")
        ):
            value = value.lower() in ("true", "1")
        want = ftext.split("|")[0].strip()
        if want in ("str",) and not isinstance(value, str) and value is not None:
            shown = (
                "a value that is not text" if key in SECRET_FIELDS else repr(value)
            )  # never echo a secret
            raise ConfigError(f"{file}: psa.{kind}.{key} must be a string in quotes, got {shown}.")
        sub[key] = value
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in sub
    ]
    if missing:
        hints = ", ".join(
            f"psa.{kind}.{m} (or COSTRECON_PSA_{m.upper()})"
            if m in SECRET_FIELDS
            else f"psa.{kind}.{m}"
            for m in missing
        )
        raise ConfigError(f"{file}: missing {hints}, required for psa.kind = {kind!r}.")
    return PSASection(kind=kind, settings=sub)


def _vendors(file: str, raw: dict[str, Any], env: dict[str, str]) -> Any:
    """[vendors], [vendors.pax8], [vendors.ingram] (issue 16): validated here, at load."""
    from .vendors.sources.settings import vendors_from_config

    return vendors_from_config(raw, env, file)


def _check_secret_file_mode(path: Path, raw: dict[str, Any]) -> None:
    psa = raw.get("psa") or {}
    has_secret = any(
        isinstance(sub, dict) and any(sub.get(k) for k in SECRET_FIELDS)
        for sub in psa.values()
        if isinstance(psa, dict)
    )
    from .vendors.sources.settings import file_holds_vendor_secrets

    if file_holds_vendor_secrets(raw):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} holds vendor API secrets but is readable by group or others (mode "
                f"{mode:o}); run `chmod 600 {path}`, or move them to COSTRECON_PAX8_* / "
                "COSTRECON_INGRAM_* environment variables."
            )
    if not has_secret:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} holds PSA secrets but is readable by group or others (mode {mode:o}); "
            f"run `chmod 600 {path}`, or move the secrets to COSTRECON_PSA_* environment variables."
        )


def load_config(path: Path | str | None = None, *, env: dict[str, str] | None = None) -> Config:
    """Read and validate the config file; a missing default file means embedded defaults."""
    env = dict(os.environ if env is None else env)
    explicit = path is not None or CONFIG_ENV in env
    path = Path(path).expanduser() if path is not None else config_search_path()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror}).") from None
        _check_secret_file_mode(path, raw)
    elif explicit:
        raise ConfigError(
            f"{path}: no such config file; copy config.example.toml there or omit --config."
        )
    else:
        path = None
    file = str(path) if path else "embedded defaults"
    cfg = Config(path=path)
    allowed = set(_SECTIONS) | {"psa", "profiles", "keys", "vendors"}
    for key, table in raw.items():
        if key not in allowed:
            raise ConfigError(
                f"{file}: unknown section [{key}]; expected one of: {', '.join(sorted(allowed))}."
            )
        if key in _SECTIONS:
            _fill(file, key, getattr(cfg, key), table)
    cfg.psa = _psa(file, raw.get("psa", {}), env)
    cfg.vendors = _vendors(file, raw, env)
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError(f"{file}: [profiles.NAME] entries must be tables.")
    cfg.profiles = profiles
    _check_profiles(file, cfg)
    keys = raw.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise ConfigError(
            f'{file}: [keys] maps binding ids to key names, such as costs.approve = "a".'
        )
    cfg.keys = keys
    if cfg.push.line_policy not in ("all", "matching"):
        raise ConfigError(
            f'{file}: push.line_policy must be "all" or "matching", got {cfg.push.line_policy!r}.'
        )
    if cfg.daemon.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{file}: daemon.log_level must be debug, info, warning or error.")
    for key, value in (
        ("sync.interval_minutes", cfg.sync.interval_minutes),
        ("sync.full_every_hours", cfg.sync.full_every_hours),
        ("inbox.rescan_seconds", cfg.inbox.rescan_seconds),
        ("tui.confirm_change_pct", cfg.tui.confirm_change_pct),
    ):
        if value <= 0:
            raise ConfigError(f"{file}: {key} must be greater than 0.")
    if cfg.inbox.stable_seconds < 0:
        raise ConfigError(f"{file}: inbox.stable_seconds must be 0 or more.")
    if cfg.inbox.keep_imports < 1:
        raise ConfigError(f"{file}: inbox.keep_imports must be 1 or more.")
    _check_folders(file, cfg)
    _check_own_access(file, cfg)
    return cfg


def _check_folders(file: str, cfg: Config) -> None:
    """processed/ and failed/ must be other folders than the inbox: a file moved "out" into the
    folder being watched would be taken again, forever."""
    inbox = cfg.inbox_dir.resolve()
    for key, folder in (
        ("inbox.processed_dir", cfg.processed_dir),
        ("inbox.failed_dir", cfg.failed_dir),
    ):
        if folder.resolve() == inbox:
            raise ConfigError(
                f"{file}: {key} is the inbox itself ({inbox}); name another folder, or leave it "
                "empty for the default beside the inbox."
            )


def _check_own_access(file: str, cfg: Config) -> None:
    """The daemon's own user must pass its own gate: `costrecond status`/`stop` and the daemon's
    start-up check talk to the socket as that user."""
    users, groups = cfg.daemon.allowed_users, cfg.daemon.allowed_groups
    if not (users or groups):
        return
    me = current_user()
    if me in users:
        return
    mine = set()
    with contextlib.suppress(KeyError, OSError):
        for gid in os.getgrouplist(me, os.getgid()):
            with contextlib.suppress(KeyError):
                mine.add(grp.getgrgid(gid).gr_name)
    if mine & set(groups):
        return
    raise ConfigError(
        f"{file}: daemon.allowed_users does not include {me!r}, the user costrecond runs as; "
        f"add it (costrecond's own status and stop commands need it)."
    )


def _check_profiles(file: str, cfg: Config) -> None:
    """[profiles.NAME] tables and the inbox defaults that refer to them, checked at load time so a
    typo stops the daemon with one sentence instead of failing every dropped file."""
    from .money import MoneyError, normalise_currency
    from .vendors.profiles import ProfileError, merged_profiles, profile_from_config

    built = {}
    for name, table in cfg.profiles.items():
        try:
            built[name] = profile_from_config(name, table)
        except ProfileError as exc:
            raise ConfigError(f"{file}: [profiles.{name}] {exc}.") from None
    wanted = cfg.inbox.default_profile
    if wanted and wanted not in merged_profiles(built):
        names = ", ".join(sorted(merged_profiles(built)))
        raise ConfigError(
            f"{file}: inbox.default_profile names no profile: {wanted!r}; expected one of: {names}."
        )
    try:
        cfg.inbox.default_currency = normalise_currency(cfg.inbox.default_currency)
    except MoneyError as exc:
        raise ConfigError(f"{file}: inbox.default_currency: {exc}.") from None


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name
