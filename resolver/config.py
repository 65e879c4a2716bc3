"""Typed settings, from command-line flags and ``IDRES_*`` environment variables.

Precedence: a flag given on the command line, then the environment variable, then the
TOML configuration file (``--config`` / ``IDRES_CONFIG``), then the default. The table in
README.md "Configuration" lists every setting.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import platformdirs


def default_data_dir() -> Path:
    """Where the embedded database lives when no DSN is given.

    As root: ``/var/lib/idres`` (the embedded server runs as an unprivileged user
    that cannot enter root's home). Otherwise the user's data dir, e.g.
    ``~/.local/share/idres``.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/idres")
    return Path(platformdirs.user_data_dir("idres"))


class StartupError(RuntimeError):
    """The node cannot start as configured; the message names the setting and the fix."""


@dataclass(frozen=True)
class Settings:
    dsn: str | None = None
    replicas: tuple[str, ...] = ()         # DSNs of streaming replicas for resolution misses
    data_dir: Path = Path()
    host: str = "127.0.0.1"
    port: int = 8000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    pool_min: int = 2
    pool_max: int = 16
    max_body_bytes: int = 1 << 20          # one PUT
    max_bulk_bytes: int = 64 << 20         # one bulk registration
    max_bulk_records: int = 100_000
    access_log: bool = False
    log_level: str = "info"
    log_format: str = "text"               # or "json": one JSON object per line
    cache_entries: int = 1_000_000
    cache_bytes: int = 512 << 20
    cache_max_ttl: int = 3600
    negative_ttl: int = 5
    negative_entries: int = 50_000         # their own bound: a flood cannot crowd out records
    head_timeout: float = 15.0             # seconds for a whole request head
    db_timeout: float = 2.0                # a cache miss waits no longer for the database
    lease: float = 2.0                     # seconds a cache lease lasts (channel.py)
    case_sensitive: bool | None = None     # None: the database's mode (migration 0006)
    binary_port: int = 0                   # 0: no binary-protocol listener
    handle_port: int = 0                   # 0: no Handle native protocol (TCP and UDP)
    site_address: str = ""                 # the address HS_SITE names ("": --host)
    max_frame_bytes: int = 1 << 20
    workers: int = 1
    worker: int = 0                        # which worker this process is (set by supervise)
    metrics_dir: Path | None = None        # where workers share their metrics (supervise)
    key_file: Path | None = None           # default: <data_dir>/node_ed25519.pem
    recursive: bool = False
    roots: tuple[str, ...] = ()            # base URLs of the root nodes
    root_keys: tuple[str, ...] = ()        # their Ed25519 public keys, in the same order
    upstream_timeout: float = 2.0
    max_depth: int = 8
    stale_window: int = 86400
    stats_flush: float = 10.0              # seconds between adds of resolution counts

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if not 1 <= self.pool_min <= self.pool_max:
            raise ValueError("pool sizes must satisfy 1 <= pool-min <= pool-max")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log format must be text or json, got {self.log_format!r}")
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be 1..256, got {self.workers}")
        if min(self.cache_entries, self.cache_bytes, self.negative_ttl,
               self.negative_entries) < 0:
            raise ValueError("cache sizes and TTLs must not be negative")
        if not 0.1 <= self.stats_flush <= 3600:
            raise ValueError(f"IDRES_STATS_FLUSH must be 0.1..3600 seconds, got {self.stats_flush}")
        if self.head_timeout <= 0 or self.db_timeout <= 0:
            raise ValueError("head and database timeouts must be positive")
        if not 0.2 <= self.lease <= 60:
            raise ValueError(f"the cache lease must be 0.2..60 seconds, got {self.lease}")
        if len(self.roots) != len(self.root_keys):
            raise ValueError("give one --root-key for every --root (the trust anchors)")
        if self.recursive and not self.roots:
            raise ValueError("--recursive needs at least one --root URL and its --root-key")
        for url in self.roots:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--root {url!r} needs a scheme: http://{url} or https://{url}")
        for key in self.root_keys:
            if not _ed25519(key):
                raise ValueError(f"--root-key {key[:60]!r} is not an Ed25519 public key (the "
                                 "unpadded base64url of 32 bytes that the root's `idres node "
                                 "key` prints)")
        for n, dsn in enumerate(self.replicas, 1):
            if not dsn.startswith(("postgres://", "postgresql://")):
                raise ValueError(f"replica {n}: give a postgresql:// DSN")
            hosts = dsn.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
            if "," in hosts or "load_balance_hosts" in dsn or "host=" in dsn:
                raise ValueError(f"replica {n} names several servers: give one --replica per "
                                 "server (its position is checked on that server)")
        if self.replicas and not self.dsn:
            raise ValueError("--replica needs --dsn: the embedded database has no replicas")
        for name, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path}: no such file")


def _ed25519(text: str) -> bool:
    from resolver.core.signing import BadSignature, load_public_key

    try:
        load_public_key(text)
    except BadSignature:
        return False
    return True


_ENV = {
    "dsn": "IDRES_DSN", "replicas": "IDRES_REPLICAS", "data_dir": "IDRES_DATA_DIR",
    "host": "IDRES_HOST",
    "port": "IDRES_PORT", "tls_cert": "IDRES_TLS_CERT", "tls_key": "IDRES_TLS_KEY",
    "pool_min": "IDRES_POOL_MIN", "pool_max": "IDRES_POOL_MAX",
    "max_body_bytes": "IDRES_MAX_BODY_BYTES", "max_bulk_bytes": "IDRES_MAX_BULK_BYTES",
    "max_bulk_records": "IDRES_MAX_BULK_RECORDS", "access_log": "IDRES_ACCESS_LOG",
    "log_level": "IDRES_LOG_LEVEL", "log_format": "IDRES_LOG_FORMAT", "cache_entries": "IDRES_CACHE_ENTRIES",
    "cache_bytes": "IDRES_CACHE_BYTES", "cache_max_ttl": "IDRES_CACHE_MAX_TTL",
    "negative_ttl": "IDRES_NEGATIVE_TTL", "binary_port": "IDRES_BINARY_PORT",
    "handle_port": "IDRES_HANDLE_PORT", "site_address": "IDRES_SITE_ADDRESS",
    "negative_entries": "IDRES_NEGATIVE_ENTRIES", "head_timeout": "IDRES_HEAD_TIMEOUT",
    "db_timeout": "IDRES_DB_TIMEOUT", "lease": "IDRES_LEASE",
    "case_sensitive": "IDRES_CASE_SENSITIVE",
    "max_frame_bytes": "IDRES_MAX_FRAME_BYTES", "workers": "IDRES_WORKERS",
    "key_file": "IDRES_KEY_FILE", "recursive": "IDRES_RECURSIVE", "roots": "IDRES_ROOTS",
    "root_keys": "IDRES_ROOT_KEYS", "upstream_timeout": "IDRES_UPSTREAM_TIMEOUT",
    "max_depth": "IDRES_MAX_DEPTH", "stale_window": "IDRES_STALE_WINDOW",
    "stats_flush": "IDRES_STATS_FLUSH",
}


ENV_NAMES = frozenset(_ENV)   # the settings a user sets (the others the supervisor does)


def add_database_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="a TOML file of settings (env IDRES_CONFIG); flags and IDRES_* "
                             "variables win over it")
    parser.add_argument("--dsn", help="PostgreSQL DSN (env IDRES_DSN); default: embedded server. "
                        "Several hosts and target_session_attrs=read-write follow a failover")
    parser.add_argument("--replica", dest="replicas", action="append",
                        help="DSN of a streaming replica that answers resolution misses "
                             "(repeatable; env IDRES_REPLICAS, space-separated)")
    parser.add_argument("--case-sensitive", action="store_true", default=None,
                        help="compare suffixes case-sensitively (env IDRES_CASE_SENSITIVE=1); "
                             "only a database without identifiers takes it; default: ASCII "
                             "case-insensitive, as the Handle.Net server")
    parser.add_argument("--data-dir", type=Path,
                        help="data directory of the embedded PostgreSQL (env IDRES_DATA_DIR; "
                             f"default {default_data_dir()})")


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (env IDRES_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (env IDRES_PORT; default 8000)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument("--pool-max", type=int, help="database connections (default 16)")
    parser.add_argument("--access-log", action="store_true", default=None,
                        help="log every request, on every path, with its request id (env "
                             "IDRES_ACCESS_LOG=1)")
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="text lines, or one JSON object per line (env IDRES_LOG_FORMAT; "
                             "default text)")
    parser.add_argument("--workers", type=int,
                        help="server processes sharing the ports (env IDRES_WORKERS; default 1)")
    parser.add_argument("--binary-port", type=int,
                        help="port of the msgpack binary protocol (env IDRES_BINARY_PORT; "
                             "default 0 = off)")
    parser.add_argument("--handle-port", type=int,
                        help="port of the Handle native protocol, TCP and UDP (env "
                             "IDRES_HANDLE_PORT; default 0 = off; Handle's own is 2641)")
    parser.add_argument("--site-address", help="the address this node's HS_SITE names (env "
                        "IDRES_SITE_ADDRESS; default --host, or 127.0.0.1 when bound to all)")
    parser.add_argument("--recursive", action="store_true", default=None,
                        help="resolve identifiers of other nodes by walking the hierarchy")
    parser.add_argument("--root", dest="roots", action="append",
                        help="base URL of a root node (repeatable; env IDRES_ROOTS, comma-separated)")
    parser.add_argument("--root-key", dest="root_keys", action="append",
                        help="that root's Ed25519 public key (one per --root)")
    parser.add_argument("--key-file", type=Path,
                        help="this node's Ed25519 key (default DATA_DIR/node_ed25519.pem)")
    parser.add_argument("--upstream-timeout", type=float,
                        help="seconds to wait for another node (default 2)")
    parser.add_argument("--max-depth", type=int, help="most referrals per resolution (default 8)")
    parser.add_argument("--stale-window", type=int,
                        help="seconds an expired answer may still be served when every "
                             "authoritative server is down (default 86400)")
    parser.add_argument("--max-frame-bytes", type=int,
                        help="largest binary-protocol frame (default 1 MiB)")
    parser.add_argument("--cache-entries", type=int,
                        help="answer cache bound, identifiers (default 1000000; 0 = off)")
    parser.add_argument("--cache-bytes", type=int,
                        help="answer cache bound, bytes (default 512 MiB)")
    parser.add_argument("--negative-ttl", type=int,
                        help="seconds a 'not found' is cached (default 5; 0 = off)")
    parser.add_argument("--negative-entries", type=int,
                        help="most 'not found' answers cached (default 50000)")
    parser.add_argument("--db-timeout", type=float,
                        help="seconds a cache miss waits for the database before a stale "
                             "answer or 503 (default 2)")
    parser.add_argument("--head-timeout", type=float,
                        help="seconds a client has to send a whole request head (default 15)")


def config_file(args: argparse.Namespace) -> Path | None:
    """The configuration file: ``--config``, else ``IDRES_CONFIG``, else none."""
    given = getattr(args, "config", None) or os.environ.get("IDRES_CONFIG")
    return Path(given) if given else None


def read_config(path: Path) -> dict[str, object]:
    """The settings a TOML file gives: keys are the settings' names (``pool_max`` or
    ``pool-max``), values typed as TOML types them.

    :raises ValueError: unreadable, not TOML, or a key that is no setting (named)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path} is not TOML: {exc}") from None
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, object] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _ENV:
            raise ValueError(f"--config {path}: {key!r} is not a setting; the settings are "
                             + ", ".join(sorted(_ENV)))
        if isinstance(value, list):
            value = tuple(str(v) for v in value)
        elif "Path" in str(types[name]) and isinstance(value, str):
            value = Path(value)
        elif "float" in str(types[name]) and isinstance(value, int) \
                and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


def sources(args: argparse.Namespace) -> tuple[dict[str, object], dict[str, str]]:
    """(each setting given, where it came from: flag, environment, config file, default);
    flags win over the environment, which wins over the file, which wins over defaults."""
    values: dict[str, object] = {"data_dir": default_data_dir()}
    came: dict[str, str] = {}
    path = config_file(args)
    if path is not None:
        for name, value in read_config(path).items():
            values[name], came[name] = value, f"config file {path}"
    types = {f.name: f.type for f in fields(Settings)}
    for name, env in _ENV.items():
        raw = os.environ.get(env)
        if raw is not None and raw != "":
            values[name], came[name] = _convert(types[name], raw, env), f"environment {env}"
    for name in _ENV:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = tuple(given) if isinstance(given, list) else given
            came[name] = "flag --" + name.replace("_", "-")
    return values, came


def from_args(args: argparse.Namespace) -> Settings:
    """Merge flags over environment variables over the configuration file over defaults."""
    return Settings(**sources(args)[0])  # type: ignore[arg-type]


def _convert(kind: object, raw: str, env: str) -> object:
    text = str(kind)
    try:
        if "tuple" in text and env == "IDRES_REPLICAS":   # (a DSN may hold commas)
            return tuple(raw.split())
        if "tuple" in text:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if "float" in text:
            return float(raw)
        if "int" in text:
            return int(raw)
        if "bool" in text:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if "Path" in text:
            return Path(raw)
    except ValueError:
        raise ValueError(f"{env}={raw!r} is not a valid value") from None
    return raw
