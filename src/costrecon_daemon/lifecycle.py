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


def prepare_runtime_dir(path: Path, group: str = "") -> None:
    """0700 (or 0750 with a shared group) directory owned by us. Refuses a dir someone else owns."""
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(
            f"{path} belongs to another user; set daemon.runtime_dir to a directory of your own."
        )
    if group:
        os.chown(path, -1, _gid(group))
        os.chmod(path, 0o750)
    else:
        os.chmod(path, 0o700)


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
