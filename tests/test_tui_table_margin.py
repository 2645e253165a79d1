"""The cost table as technicians know it (issue 18): seed column names, a visible selection column,
price and margin columns, the margin floor, the `i` history and which cost source wins (20.11)."""

from __future__ import annotations

from textual.widgets import Sparkline

from costrecon_tui.screens.dialogs import HelpScreen
from costrecon_tui.screens.item_detail import ItemDetailScreen
from costrecon_tui.screens.preview import ApproveScreen
from costrecon_tui.widgets.cost_grid import layout
from tests.fake_client import FakeClient, costs_ready, make_app, screen_text, settle


def _titles(width: int, **kw) -> list[str]:
    return [c.title for c in layout(width, **kw)]


def test_headers_use_the_full_names_where_they_fit_and_every_layout_fills_the_width():
    assert _titles(160) == [
        "Mark",
        "Service ID",
        "Service name",
        "# of Contracts",
        "Catalogue cost",
        "Vendor cost",
        "Change",
        "Price",
        "Margin %",
        "Margin % after",
        "Action",
    ]
    assert _titles(120) == [
        "Mark",
        "Service ID",
        "Service name",
        "# of Contracts",
        "Catalogue cost",
        "Vendor cost",
        "Change",
        "Action",
    ]
    # 80 columns: abbreviations, no prices, and the name keeps room to read
    assert _titles(80) == [
        "Mark",
        "Service ID",
        "Name",
        "Ctr",
        "Catalogue",
        "Vendor",
        "Change",
        "Action",
    ]
    for width in (80, 100, 120, 160):
        for prices in (None, True, False):
            cols = layout(width, prices=prices)
            assert sum(c.width for c in cols) + len(cols) - 2 == width, (width, prices)
            assert next(c for c in cols if c.key == "name").width >= 8
    # prices forced on at 80 columns take the room of the contract count and the change
    assert _titles(80, prices=True)[-4:] == ["Price", "Mrg%", "Aft%", "Action"]


def _line(grid, index: int) -> str:
    y = index - int(grid.scroll_offset.y)
    return "".join(seg.text for seg in grid.render_line(y))


async def test_marked_rows_read_as_x_in_the_selection_column_and_the_status_line_counts_them():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        await pilot.press("space", "space")  # marks rows 0 and 1, cursor on row 2
        assert _line(grid, 0).startswith(" [x] ") and _line(grid, 1).startswith(" [x] ")
        assert _line(grid, 2).startswith("▶[ ] ")
        detail = str(app.costs.query_one("#cost-detail").render())
        assert "2 marked" in detail
        first = grid.ids[0]
        query = grid.rows[grid.ids[1]].identifier.lower()  # row 0 does not match it
        await pilot.press("slash", *query, "enter")
        await settle(pilot, lambda: grid.index_of(first) is None and app.costs.loaded_query)
        await pilot.pause()
        detail = str(app.costs.query_one("#cost-detail").render())
        assert "2 marked (1 hidden by filter)" in detail


async def test_m_shows_price_and_margin_columns_at_80_and_low_margins_are_flagged():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        header = str(app.costs.query_one("#cost-header").render())
        assert "Service ID" in header and "Price" not in header
        await pilot.press("m")
        await pilot.pause()
        header = str(app.costs.query_one("#cost-header").render())
        assert "Price" in header and "Aft%" in header
        low = [i for i in grid.ids if grid.rows[i].below_margin_floor]
        assert low, "the fake has rows whose vendor cost breaks the 20 % floor"
        grid.move_to(grid.ids.index(low[0]))
        await pilot.pause()
        line = _line(grid, grid.cursor)
        assert "!" in line and "approve !" in line
        assert "under the floor" in str(app.costs.query_one("#cost-detail").render())
        await pilot.press("m")
        await pilot.pause()
        assert "Price" not in str(app.costs.query_one("#cost-header").render())


async def test_i_shows_the_history_chart_the_values_and_which_source_wins_and_why():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        contested = next(i for i in grid.ids if grid.rows[i].vendor_sources)
        grid.move_to(grid.ids.index(contested))
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(app.screen, ItemDetailScreen))
        screen = app.screen
        await settle(
            pilot, lambda: "loading" not in str(screen.query_one("#history-caption").render())
        )
        assert client.calls_to("cost_history")[-1]["item_id"] == contested
        assert len(screen.query_one(Sparkline).data) == 4
        text = screen_text(app)
        assert "vendor-cost history: 4 values" in text
        assert "2 sources supply a cost; the first wins" in text
        assert "wins because" in text and "newer than TD SYNNEX" in text
        assert "margin now" in text and "price" in text
        await pilot.press("i")  # i again closes
        await settle(pilot, lambda: not isinstance(app.screen, ItemDetailScreen))


async def test_question_mark_explains_every_column():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        for name in ("Service ID", "# of Contracts", "Catalogue cost", "Margin % after", "Mark"):
            assert name in text


async def test_the_approval_lists_lines_under_the_margin_floor_and_the_margin_impact():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: costs_ready(app))
        grid = app.costs.grid
        low = next(
            i for i in grid.ids if grid.rows[i].below_margin_floor and grid.rows[i].contracts
        )
        grid.move_to(grid.ids.index(low))
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, ApproveScreen))
        text = screen_text(app)
        assert "monthly margin" in text and "under the 20 % margin floor" in text
        assert "Customer / agreement" in text and "Managed Services" in text
