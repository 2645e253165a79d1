"""Who is calling: the Unix socket's peer credentials, never anything the client says (DESIGN
§3)."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    user: str
    groups: frozenset[str]


def peer_of(sock: socket.socket) -> Peer:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid:{uid}"
    return Peer(pid=pid, uid=uid, gid=gid, user=user, groups=frozenset(_groups(user, gid)))


def _groups(user: str, gid: int) -> list[str]:
    names = []
    try:
        ids = os.getgrouplist(user, gid)
    except (KeyError, OSError):
        ids = [gid]
    for g in ids:
        try:
            names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    return names


class Gate:
    """allowed_users / allowed_groups; an empty configuration means the daemon's own user only."""

    def __init__(self, allowed_users: list[str], allowed_groups: list[str]):
        own = pwd.getpwuid(os.getuid()).pw_name
        self.users = (
            frozenset(allowed_users) if (allowed_users or allowed_groups) else frozenset({own})
        )
        self.groups = frozenset(allowed_groups)

    def allows(self, peer: Peer) -> bool:
        return peer.user in self.users or bool(self.groups & peer.groups)
