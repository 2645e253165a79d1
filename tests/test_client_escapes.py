"""The client escapes control characters in everything the daemon sends (issue 13 item 6): names,
subjects, file names and messages come from price files, the PSA and other users, and no view or
command may put a raw newline or ESC sequence on a technician's terminal."""

from __future__ import annotations

import httpx
import pytest

from costrecon_tui.client import CostRow, DaemonClient, DaemonError

HOSTILE = "Backup\x1b]0;owned\x07\n2026-12-01 INFO forged\x1b[2J"


def _response(status: int, body: dict) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://d/v1/x"))


def test_a_cost_row_name_is_escaped_before_any_view_sees_it():
    body = {"rows": [{"id": 1, "identifier": "BK\x1b[31m-1", "name": HOSTILE, "currency": "USD"}]}
    rows = [CostRow.from_json(r) for r in DaemonClient._decode(_response(200, body))["rows"]]
    assert "\x1b" not in rows[0].name and "\n" not in rows[0].name and "\x07" not in rows[0].name
    assert rows[0].name.startswith("Backup\\x1b]0;owned\\x07\\x0a2026")
    assert rows[0].identifier == "BK\\x1b[31m-1"
    assert rows[0].id == 1  # numbers pass through untouched


def test_activity_subjects_file_names_and_nested_details_are_escaped():
    body = {
        "entries": [
            {
                "id": 7,
                "subject": HOSTILE,
                "details": {"file": "a\rb.csv", "rows": [{"sku": "X\x9bY"}]},
                "before": None,
            }
        ]
    }
    entry = DaemonClient._decode(_response(200, body))["entries"][0]
    assert entry["subject"].count("\\x0a") == 1 and "\n" not in entry["subject"]
    assert entry["details"]["file"] == "a\\x0db.csv"
    assert entry["details"]["rows"][0]["sku"] == "X\\x9bY"
    assert entry["before"] is None and entry["id"] == 7


def test_an_error_message_from_the_daemon_is_escaped():
    body = {
        "error": {"code": "bad_file", "message": f"Cannot read {HOSTILE}.", "data": {"f": "\t"}}
    }
    with pytest.raises(DaemonError) as err:
        DaemonClient._decode(_response(400, body))
    assert "\x1b" not in str(err.value) and "\n" not in str(err.value)
    assert err.value.data == {"f": "\\x09"}
