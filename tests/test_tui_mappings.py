"""The Mappings view from the catalogue's side (issue 15 item 4), over the FakeClient."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fake_client import FakeClient, all_views_ready, make_app, settle


async def test_items_needing_a_cost_come_first_and_enter_on_a_candidate_maps_it():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        await settle(pilot, lambda: view.needs_table.row_count > 0)
        weights = [i["lines"] * (i["cost"] or 0) for i in view.needs]
        assert weights == sorted(weights, reverse=True)
        # the first item with a candidate: its candidates show beside it
        n = next(k for k, i in enumerate(view.needs) if i["candidates"])
        view.needs_table.move_cursor(row=n)
        item = view.needs[n]
        await settle(pilot, lambda: view.candidates == item["candidates"])
        assert view.candidates_table.row_count == len(item["candidates"])
        await pilot.press("enter", "enter")  # into the candidates, then map the first
        await settle(pilot, lambda: client.calls_to("create_mapping"))
        cand = item["candidates"][0]
        assert client.calls_to("create_mapping") == [
            {
                "vendor": cand["vendor"],
                "sku": cand["sku"],
                "term": cand["term"],
                "item_id": item["item_id"],
            }
        ]
        # it now has a vendor cost, so it leaves the list
        await settle(pilot, lambda: item["item_id"] not in [i["item_id"] for i in view.needs])


async def test_typing_searches_vendor_rows_and_u_shows_unmatched_rows_filtered_and_paged():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        await settle(pilot, lambda: view.needs_table.row_count > 0)
        row = client._unmatched[0]
        await pilot.press("slash", *row["sku"])
        await settle(pilot, lambda: client.calls_to("mapping_search"))
        await settle(pilot, lambda: [c["sku"] for c in view.candidates][:1] == [row["sku"]])
        assert client.calls_to("mapping_search")[-1] == {"q": row["sku"], "limit": 20}

        # esc leaves the search: the box closes, its text goes, the items list has the keys again
        await pilot.press("escape")
        await settle(pilot, lambda: view.needs_table.has_focus)
        box = view.query_one("#mappings-search")
        assert view.searching == "" and box.value == "" and not box.has_class("shown")
        await pilot.press("u")
        await settle(pilot, lambda: view.unmatched_table.row_count > 0)
        assert client.calls_to("unmatched_page")[-1]["before"] is None
        view.unmatched_table.focus()
        await pilot.press("f")  # this row's file
        await pilot.press("f")  # this row's vendor
        await settle(
            pilot,
            lambda: (client.calls_to("unmatched_page") or [{}])[-1].get("vendor") is not None,
        )
        vendor = client.calls_to("unmatched_page")[-1]["vendor"]
        await settle(
            pilot,
            lambda: view.unmatched and all(u["vendor"] == vendor for u in view.unmatched),
        )
        # never loaded whole: every request asks for one page
        assert all(c["limit"] == 200 for c in client.calls_to("unmatched_page"))


async def test_what_the_last_pull_could_not_price_is_said_beside_the_item_and_the_mapping():
    client = FakeClient()
    item_id = sorted(
        (r for r in client._rows.values() if r["vendor_cost"] is None and r["lines"]),
        key=lambda r: (-(r["lines"] * (r["catalog_cost"] or 0)), r["id"]),
    )[0]["id"]
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        await settle(pilot, lambda: view.needs_table.row_count > 0 and view.mappings)
        mapping_id = view.mappings[0]["id"]
        client.vendor_sources = [
            {
                "name": "ingram",
                "state": "ok",
                "not_found": [
                    {
                        "identifier": "part number 4A0036",
                        "reason": "Ingram Micro: Product not found.",
                        "keys": [f"vendor:{item_id}", f"map:{mapping_id}"],
                    }
                ],
            }
        ]
        await pilot.press("ctrl+r")
        note = view.query_one("#not-found")
        await settle(pilot, lambda: view.not_found_items)
        view.needs_table.move_cursor(row=0)
        await settle(pilot, lambda: note.display)
        assert view.needs[0]["item_id"] == item_id
        shown = str(note.render())
        assert "part number 4A0036" in shown and "Product not found" in shown
        title = str(view.query_one("#mappings-title").render())
        assert "✗ 1 not found at the last pull" in title
        # another item: nothing said about it
        view.needs_table.move_cursor(row=1)
        await settle(pilot, lambda: not note.display)


async def test_a_page_of_unmatched_rows_arriving_after_u_went_back_leaves_the_items_title():
    client = FakeClient()
    gate, answered = asyncio.Event(), []
    real = client.unmatched_page

    async def held(*args: Any, **kwargs: Any) -> dict[str, Any]:
        page = await real(*args, **kwargs)
        await gate.wait()  # a slow daemon: the page arrives after the user moved on
        answered.append(page)
        return page

    client.unmatched_page = held  # type: ignore[method-assign]
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        await settle(pilot, lambda: view.needs_table.row_count > 0)
        view.needs_table.focus()
        title = view.query_one("#needs-title")
        await pilot.press("u")
        await settle(pilot, lambda: client.calls_to("unmatched_page"))
        await pilot.press("u")
        await settle(pilot, lambda: not view.showing_unmatched and view.loaded)
        gate.set()
        await settle(pilot, lambda: answered)
        await pilot.pause()
        assert str(title.render()).startswith("Needs a vendor cost")


async def test_a_search_typed_right_after_the_slash_goes_into_the_search_box():
    """Over SSH "/dnsf" arrives in one read; "d" reaching the table would ask to delete."""
    from textual import events

    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        await settle(pilot, lambda: view.needs_table.row_count > 0)
        for key in "/dnsf":
            app.post_message(events.Key("slash" if key == "/" else key, key))
        box = view.query_one("#mappings-search")
        await settle(pilot, lambda: box.value == "dnsf")
        await settle(pilot, lambda: client.calls_to("mapping_search"))
        assert box.has_focus and app.current_view == "mappings"
        assert client.calls_to("delete_mapping") == []


async def test_unmatched_rows_the_page_left_without_suggestions_get_them_on_screen_and_on_enter():
    """The daemon works out suggestions for a screenful of a page only (the page answers at
    once); the view asks for the others — the rows on screen first — and fills their column,
    and enter on a row still without them asks for that row's before offering a pick."""
    client = FakeClient()
    app = make_app(client)
    asked_page = client.unmatched_page

    async def one_suggestion_per_page(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return await asked_page(*args, **{**kwargs, "suggest": 1})

    client.unmatched_page = one_suggestion_per_page  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        await settle(pilot, lambda: view.needs_table.row_count > 0)
        await pilot.press("u")
        await settle(pilot, lambda: view.unmatched_table.row_count == len(client._unmatched))
        await settle(pilot, lambda: all(u["suggestions"] is not None for u in view.unmatched))
        asked = [i for c in client.calls_to("unmatched_suggestions") for i in c["ids"]]
        assert sorted(asked) == sorted(u["vendor_cost_id"] for u in client._unmatched[1:])
        for n, u in enumerate(view.unmatched):
            shown = str(view.unmatched_table.get_cell(str(n), "best"))
            want = u["suggestions"][0]["identifier"] if u["suggestions"] else "no suggestion"
            assert shown.split(" (")[0] == want

        # enter on a row whose suggestions are not known yet: asked for, then offered
        calls = len(client.calls_to("unmatched_suggestions"))
        view.unmatched[1]["suggestions"] = None
        view.unmatched_table.focus()
        view.unmatched_table.move_cursor(row=1)
        await pilot.press("enter")
        await settle(pilot, lambda: len(client.calls_to("unmatched_suggestions")) > calls)
        assert client.calls_to("unmatched_suggestions")[-1] == {
            "ids": [view.unmatched[1]["vendor_cost_id"]]
        }
        await settle(pilot, lambda: app.screen.query("#suggestions"))
        first = view.unmatched[1]["suggestions"][0]["item_id"]
        await pilot.press("1")
        await settle(pilot, lambda: client.calls_to("create_mapping"))
        assert client.calls_to("create_mapping")[-1]["item_id"] == first


async def test_vendor_rows_still_being_indexed_are_said_and_shown_once_they_are(monkeypatch):
    """After a big import the daemon indexes its rows for search in the background: until it
    has, candidates and search may miss them, so the view says so rather than look empty, and
    asks again every few seconds: once the daemon is done it loads (or searches) again."""
    from costrecon_tui.screens import mappings

    monkeypatch.setattr(mappings, "INDEXING_POLL", 0.1)
    client = FakeClient()
    client.search_indexed = False
    app = make_app(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, lambda: all_views_ready(app))
        await pilot.press("4")
        view = app.mappings_view
        note = view.query_one("#not-found")
        await settle(pilot, lambda: view.needs_table.row_count > 0 and note.display)
        assert "still being indexed" in str(note.render())
        await pilot.press("slash", "x")  # a search is said to be incomplete too
        await settle(pilot, lambda: client.calls_to("mapping_search"))
        assert note.display and view.indexing
        searches = len(client.calls_to("mapping_search"))
        client.search_indexed = True  # the daemon catches up: the search runs again by itself
        await settle(pilot, lambda: len(client.calls_to("mapping_search")) > searches)
        await settle(pilot, lambda: not note.display)
        assert client.calls_to("mapping_search")[-1]["q"] == "x"
