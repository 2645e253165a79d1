"""Single instance, socket placement and permissions (DESIGN.md §3, notes §4.3).

One daemon per state directory: an ``flock`` on ``costrecond.lock`` that the kernel releases
when the process dies, so there is never a stale-pid problem. A leftover socket file is removed
only while holding that lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import socket
import stat
from pathlib import Path


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = read_lock_pid(self.path)
                who = f" (pid {pid})" if pid else ""
                raise AlreadyRunning(
                    f"costrecond is already running for {self.path.parent}{who}; "
                    "stop it with `costrecond stop` or use another state directory."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def read_lock_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def is_locked(path: Path) -> bool:
    """True while some process holds the instance lock (i.e. a daemon is alive)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _own_dir(path: Path, mode: int, what: str) -> list[str]:
    """Create ``path`` (parents as needed) or accept it only if it is a real directory of ours.

    Nothing here follows a symlink at ``path`` itself: another local user could plant one (in /tmp
    especially) so that we chmod their target or serve our socket where they can reach it. Returns
    a line for the log when an existing directory had to be tightened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise PermissionError(
            f"{path} is a symbolic link; remove it, or set {what} to a directory of your own."
        )
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory; move it aside or set {what}.")
    if st.st_uid != os.getuid():
        raise PermissionError(
            f"{path} belongs to another user; set {what} to a directory of your own."
        )
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        current = stat.S_IMODE(os.fstat(fd).st_mode)
        if current != mode:
            os.fchmod(fd, mode)
            return [f"{path}: permissions tightened from {current:o} to {mode:o}"]
        return []
    finally:
        os.close(fd)


def prepare_runtime_dir(path: Path, group: str = "") -> None:
    """0700 (or 0750 with a shared group) directory owned by us. Refuses a dir someone else owns
    and a symlink (issue: a planted /tmp/costrecon-<uid> link let another user hijack the
    socket)."""
    _own_dir(path, 0o750 if group else 0o700, "daemon.runtime_dir")
    if group:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, -1, _gid(group))
        finally:
            os.close(fd)


# The database, its WAL/SHM companions, backups, the log and the lock: everything the daemon keeps.
_PRIVATE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".bak", ".log", ".lock", ".key")


def secure_state_dir(path: Path, group: str = "") -> list[str]:
    """Make the state directory and the files in it private whatever the umask was.

    The directory becomes 0700 (0750 with the shared-install group) and every database, log and
    backup file 0600 (0640); the process umask is set so that files created later (SQLite creates
    ``-wal``/``-shm`` lazily) are born private. Returns what was tightened, for the log.
    """
    os.umask(0o027 if group else 0o077)
    file_mode = 0o640 if group else 0o600
    notes = _own_dir(path, 0o750 if group else 0o700, "daemon.state_dir")
    for entry in os.scandir(path):
        if not entry.name.endswith(_PRIVATE_SUFFIXES) and ".db" not in entry.name:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            continue
        if stat.S_IMODE(st.st_mode) & ~file_mode:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, file_mode)
            finally:
                os.close(fd)
            notes.append(
                f"{entry.path}: permissions tightened from {stat.S_IMODE(st.st_mode):o} "
                f"to {file_mode:o}"
            )
    return notes


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PermissionError(
            f"daemon.socket_group names {group!r}, which is not a group on this machine."
        ) from None


def bind_socket(path: Path, group: str = "") -> socket.socket:
    """Bind the API socket 0600 (0660 for ``group``), removing a stale file (lock is held)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if group:
        os.chown(path, -1, _gid(group))
        os.chmod(path, 0o660)
    sock.listen(128)
    sock.setblocking(False)
    return sock
