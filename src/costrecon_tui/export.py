"""``costrecon activity export``: the activity log as a spreadsheet-safe CSV, and the checkpoint
kept beside it (``<file>.checkpoint.json``) that later detects entries cut from the log's end."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

COLUMNS = ("id", "at", "actor", "action", "subject", "before", "after", "details")
# Spreadsheets run a cell starting with these as a formula (CSV injection); tab and CR too, as
# some strip them before deciding.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(entries: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    n = 0
    for e in entries:
        writer.writerow([_cell(e.get(c)) for c in COLUMNS])
        n += 1
    return n


def checkpoint_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".checkpoint.json")


def write_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    # Written whole then renamed, so a crash never leaves half a checkpoint to verify against.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(checkpoint, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path``, or ValueError with one sentence saying what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the checkpoint {path}: {exc.strerror}.") from None
    except ValueError:
        raise ValueError(
            f"{path} is not a checkpoint written by `costrecon activity export`."
        ) from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("id"), int)
        or not isinstance(data.get("hash"), str)
        or not isinstance(data.get("signature"), str | None)
    ):
        raise ValueError(f"{path} is not a checkpoint written by `costrecon activity export`.")
    return data
