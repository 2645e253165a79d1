"""Where a file goes after its import: processed/<date>/ or failed/ with an errors report;
never overwriting anything."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from ..db import PriceImport
from ..jsonable import iso

log = logging.getLogger(__name__)


def unique_path(directory: Path, name: str, *, with_report: bool) -> Path:
    """``directory/name``, or ``name (2)``, ``(3)``… when taken (never overwrite)."""
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    n = 1
    while True:
        candidate = directory / (name if n == 1 else f"{stem} ({n}){dot}{ext}")
        report = candidate.with_name(candidate.name + ".errors.txt")
        if not candidate.exists() and not (with_report and report.exists()):
            return candidate
        n += 1


def move_no_clobber(src: Path, dst: Path) -> Path:
    """Move ``src`` to ``dst`` without ever replacing an existing file (a clash gets a suffix)."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        try:
            os.link(src, dst)  # fails if dst exists: no overwrite, unlike rename
        except FileExistsError:
            dst = unique_path(dst.parent, dst.name, with_report=False)
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            # Another file system (or one without hard links): copy beside, then rename into place.
            tmp = dst.with_name(f".{dst.name}.costrecon-tmp")
            shutil.copy2(src, tmp)
            if dst.exists():
                dst = unique_path(dst.parent, dst.name, with_report=False)
            os.replace(tmp, dst)
        os.unlink(src)
        return dst


def errors_report(record: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"costrecon could not import {record['file_name']}.",
        "Nothing from this file was imported. Fix the problems below and drop the file in the "
        "inbox again.",
        "",
        f"received: {iso(record.get('received_at')) or ''}",
        f"sha256:   {record.get('sha256', '')}",
    ]
    if record.get("profile"):
        lines.append(
            f"profile:  {record['profile']}   vendor: {record.get('vendor') or '-'}   "
            f"data rows: {record.get('rows_total', 0)}"
        )
    lines += ["", f"{len(errors)} problem{'s' if len(errors) != 1 else ''}:"]
    for e in errors:  # each message already names its row and column ("row 14, column Cost: …")
        lines.append(f"  {e['message']}")
    return "\n".join(lines) + "\n"


def place_file(path: Path, final: Path, record: Mapping[str, Any]) -> Path:
    moved = move_no_clobber(path, final)
    if record["status"] == "failed":
        report = moved.with_name(moved.name + ".errors.txt")
        tmp = report.with_name("." + report.name + ".tmp")
        tmp.write_text(errors_report(record, record.get("errors") or []), encoding="utf-8")
        os.replace(tmp, report)
    return moved


def set_final_path(conn: Connection, import_id: int, final_path: str) -> None:
    conn.execute(
        update(PriceImport).where(PriceImport.id == import_id).values(final_path=final_path)
    )
