"""Domain errors carry no HTTP status; the API maps them to responses in one place."""

from __future__ import annotations

import json

import pytest

from costrecon_daemon.api.errors import response_for
from costrecon_daemon.errors import Conflict, CostreconError, InvalidInput, NotFound


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("bad_field", "The field 'cost' is required."), 400),
        (NotFound("not_found", "There is no change set 7."), 404),
        (Conflict("stale", "The catalogue cost changed.", {"item_id": 3}), 409),
    ],
)
def test_each_domain_error_becomes_its_status_with_the_documented_body(error, status):
    resp = response_for(error)
    assert resp.status == status
    body = json.loads(resp.text)
    expected = {"code": error.code, "message": error.message}
    if error.data:
        expected["data"] = error.data
    assert body == {"error": expected}


def test_domain_errors_know_nothing_about_http():
    err = Conflict("busy", "Item 3 is already being pushed.")
    assert isinstance(err, CostreconError)
    assert not hasattr(err, "status")
