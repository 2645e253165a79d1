"""Should a client talk to the socket at this path? (issue 13 item 4)

A client must not trust whatever answers on the configured path: when the runtime directory sits
in a world-writable place (the ``/tmp/costrecon-<uid>`` fallback), another local user can plant a
symlink or a directory there and run a fake daemon behind it. Before talking, both clients (the
TUI/CLI and ``costrecond status|stop``) check:

- the socket's directory is a real directory (not a symlink) that no one but its owner can write;
- the socket itself is a socket owned by that same user;
- that user is us, root, or the directory sits in a parent only root or that user can write
  (``/run/costrecon`` of a shared install, not ``/tmp``);
- the process that accepts the connection runs as that user (SO_PEERCRED).

This module is a leaf (standard library only) so the TUI may import it.
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
import struct
from pathlib import Path


class UntrustedSocket(Exception):
    """``str()`` is the one sentence to show."""


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_socket(path: Path | str) -> None:
    """Raise UntrustedSocket unless the socket at ``path`` is safe to talk to.

    A path that does not exist (or holds no socket yet) passes: connecting then fails with the
    usual "not running" message, which is the truth.
    """
    path = Path(path)
    directory = path.parent
    try:
        dst = os.lstat(directory)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(dst.st_mode):
        raise UntrustedSocket(
            f"{directory} is a symbolic link, which another user may have planted; not talking "
            f"to the daemon there. Remove it and restart costrecond."
        )
    owner = dst.st_uid
    if not stat.S_ISDIR(dst.st_mode) or stat.S_IMODE(dst.st_mode) & 0o022:
        raise UntrustedSocket(
            f"{directory} can be written by other users; not talking to the daemon there. "
            f"Run `chmod 700 {directory}` (or 750 for a shared install) and restart costrecond."
        )
    try:
        sst = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(sst.st_mode):
        return
    if sst.st_uid != owner:
        raise UntrustedSocket(
            f"{path} belongs to {_name(sst.st_uid)}, not to {_name(owner)} who owns its directory; "
            "not talking to it."
        )
    me = os.getuid()
    if owner not in (me, 0):
        pst = os.lstat(directory.parent)
        if stat.S_IMODE(pst.st_mode) & 0o022 or pst.st_uid not in (0, owner):
            raise UntrustedSocket(
                f"{directory} belongs to {_name(owner)} and sits in {directory.parent}, which "
                "other users can write; not talking to a daemon there. Point daemon.runtime_dir "
                "at your own directory or at the shared install's /run/costrecon."
            )


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def check_peer(path: Path | str, timeout: float = 2.0) -> None:
    """The process behind the socket runs as the socket's owner (or root). Connection errors are
    left to the caller's own request, which reports "not running"."""
    path = Path(path)
    try:
        owner = os.lstat(path).st_uid
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError:
            return
        uid = peer_uid(s)
    if uid not in (owner, 0):
        raise UntrustedSocket(
            f"the process answering on {path} runs as {_name(uid)}, not as {_name(owner)} who "
            "owns the socket; not talking to it."
        )


def trusted(path: Path | str) -> None:
    check_socket(path)
    check_peer(path)
