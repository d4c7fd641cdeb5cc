"""Resolving a USER / chown spec against an image's /etc/passwd and /etc/group. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ids:
    """Numeric identity: uid, primary gid, supplementary gids."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def _table(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(spec: str, passwd: str = "", group: str = "") -> Ids:
    """Ids for ``spec`` ("", "name", "uid", "name:group", "uid:gid", ...).

    "" means root. A numeric uid missing from passwd is allowed (gid 0 unless given),
    as Docker does; an unknown name raises ValueError with a message naming it.
    """
    spec = spec.strip()
    if not spec:
        return Ids(0, 0)
    user_part, _, group_part = spec.partition(":")
    users = _table(passwd)
    groups = _table(group)
    uid: int | None = None
    gid = 0
    name = ""
    for row in users:
        if len(row) >= 4 and (row[0] == user_part or (user_part.isdigit() and row[2] == user_part)):
            name, uid, gid = row[0], int(row[2]), int(row[3])
            break
    if uid is None:
        if not user_part.isdigit():
            raise ValueError(f"unknown user {user_part!r} (not in /etc/passwd)")
        uid = int(user_part)
    if group_part:
        gid = _group_id(group_part, groups)
    supplementary = tuple(
        sorted(
            {
                int(row[2])
                for row in groups
                if len(row) >= 4 and name and name in row[3].split(",") and row[2].isdigit()
            }
        )
    )
    return Ids(uid, gid, supplementary)


def _group_id(part: str, groups: list[list[str]]) -> int:
    for row in groups:
        if len(row) >= 3 and (row[0] == part or (part.isdigit() and row[2] == part)):
            return int(row[2])
    if part.isdigit():
        return int(part)
    raise ValueError(f"unknown group {part!r} (not in /etc/group)")
