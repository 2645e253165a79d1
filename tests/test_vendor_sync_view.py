"""The Sync view shows each distributor API source (issue 16): state, last and next pull, and the
exact fix when the distributor refused the credentials."""

from __future__ import annotations

from typing import Any

from tests.fake_client import FakeClient, all_views_ready, make_app, settle

PAX8_FIX = (
    "In the Pax8 app open Integrations > API credentials, create (or renew) a credential and put "
    "its client id and secret in [vendors.pax8]"
)


class VendorFake(FakeClient):
    async def status(self) -> dict[str, Any]:
        status = await super().status()
        status["vendors"] = {
            "pull_every_hours": 24,
            "sources": [
                {
                    "name": "pax8",
                    "vendor": "Pax8",
                    "state": "failed",
                    "error": "Pax8 refused the API credentials; check vendors.pax8.client_id.",
                    "fix": PAX8_FIX + ", then run `costrecon vendors pull pax8`.",
                    "last_pull": "2026-12-06T08:00:00Z",
                    "next_pull": "2026-12-07T08:00:00Z",
                    "last_result": None,
                },
                {
                    "name": "ingram",
                    "vendor": "Ingram Micro",
                    "state": "ok",
                    "error": None,
                    "fix": None,
                    "last_result": "Ingram Micro API pull, 42 prices, 2 not found; 40 matched",
                    "last_pull": "2026-12-06T08:00:00Z",
                    "next_pull": "2026-12-07T08:00:00Z",
                },
            ],
        }
        return status


async def test_sync_view_lists_vendor_sources_with_their_pulls_and_the_fix() -> None:
    app = make_app(VendorFake())
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("5")
        body = app.sync_view.query_one("#sync-body")
        await settle(pilot, lambda: "Vendor APIs" in str(body.render()))
        text = " ".join(str(body.render()).split())
        assert "✗ Pax8: Pax8 refused the API credentials" in text
        assert "fix: " + " ".join(PAX8_FIX.split()) in text
        assert "✓ Ingram Micro: Ingram Micro API pull, 42 prices, 2 not found" in text
        assert text.count("last pull") == 2 and text.count("next pull") == 2


async def test_sync_view_without_vendor_sources_shows_no_vendor_section() -> None:
    app = make_app(FakeClient())
    async with app.run_test(size=(120, 60)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("5")
        body = app.sync_view.query_one("#sync-body")
        await settle(pilot, lambda: "Mirror" in str(body.render()))
        assert "Vendor APIs" not in str(body.render())
