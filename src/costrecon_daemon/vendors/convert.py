"""Stage 3: validate and convert every row into a VendorRow, collecting all errors."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from itertools import islice
from operator import attrgetter, itemgetter, lt
from typing import Any

from costrecon_daemon.money import QUANT, MoneyError, normalise_currency
from costrecon_daemon.runtime import no_gc
from costrecon_daemon.vendors.layout import ColumnPlan, choose_profile, locate_columns
from costrecon_daemon.vendors.normalise import (
    TERM_MONTHS,
    normalise_billing,
    normalise_term,
    parse_cost,
)
from costrecon_daemon.vendors.profiles import (
    Profile,
)
from costrecon_daemon.vendors.rows import (
    DECIMAL_SAMPLE_ROWS,
    DESCRIPTION_STORED,
    FileUnreadable,
    ReadResult,
    RowError,
    StoredRow,
    VendorRow,
    first_records,
)

# Rows handed to the sink at a time: a few MB. Each chunk is one write transaction of the
# import. The reader process (big files) uses READER_CHUNK instead: see there.
STREAM_CHUNK = 20_000
# 10**(4 - n): the ten-thousandths of one unit of the n-th decimal place, for n = 0..4.
_UNITS_PER = (10_000, 1_000, 100, 10, 1)
# Longest digit string converted to ten-thousandths without Decimal: with at most 4 decimals,
# its integer has at most 28 digits, so Decimal's quantize (28 digits of precision) would succeed
# too and give the same value; a longer one takes the Decimal path and its error.
_PLAIN_DIGITS = 24
MAX_ERRORS_KEPT = 100_000  # row problems listed for one file; the rest are counted


def _detect_decimal_mark(samples: list[str], delimiter: str | None) -> str:
    """Vote per cost cell on which separator is the decimal mark. A last separator followed by
    other than three digits is a decimal mark; ``1,234`` alone proves nothing. Undecided files
    follow the delimiter: Excel writes ``;`` exactly where the decimal mark is ``,`` (§4.8)."""
    comma = dot = 0
    for raw in samples:
        text = raw.strip()
        last_c, last_d = text.rfind(","), text.rfind(".")
        if last_c == last_d:  # both -1
            continue
        mark = "," if last_c > last_d else "."
        at = max(last_c, last_d)
        digits = 0
        for ch in text[at + 1 :]:
            if not ch.isdigit():
                break
            digits += 1
        other_before = (last_d if mark == "," else last_c) != -1
        if digits != 3 or other_before:
            if mark == ",":
                comma += 1
            else:
                dot += 1
        elif mark == "." and text.count(".") > 1:
            comma += 1  # 1.234.567: dots group thousands
        elif mark == "," and text.count(",") > 1:
            dot += 1
    if comma != dot:
        return "," if comma > dot else "."
    return "," if delimiter == ";" else "."


_DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y")


def _parse_date(text: str) -> date:
    text = text.strip()
    if text.replace(".", "", 1).isdigit() and 1 <= float(text) < 2958466:
        # an Excel date cell read without its style: days since 1899-12-30
        return date(1899, 12, 30) + timedelta(days=int(float(text)))
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date")


def read_sheet(
    name: str,
    sheet_rows: Callable[[str | None], Iterator[list[str]]],
    forced: Profile | None,
    all_profiles: Mapping[str, Profile],
    default_currency: str,
    vendor: str | None,
    today: date | None,
    faster: Callable[[str | None], Callable[[], Iterator[list[str]]] | None] | None = None,
) -> ReadResult:
    """A workbook's price sheet, whoever reads its cells: the profile from the first sheet's
    first rows (unless forced), then the profile's sheet located and converted. ``faster(sheet)``
    may hand back another reader of that sheet (calamine) for the full passes."""
    prof = forced or choose_profile(
        name, first_records(lambda: sheet_rows(None)), all_profiles, None, workbook=True
    )
    sheet_name = prof.sheet
    opener = faster(sheet_name) if faster is not None else None
    if opener is None:

        def opener() -> Iterator[list[str]]:
            return sheet_rows(sheet_name)

    plan, skip = locate_columns(prof, opener, name)
    return finish_read(prof, plan, opener, skip, name, default_currency, vendor, today, None, None)


def finish_read(
    prof: Profile,
    plan: ColumnPlan,
    opener: Callable[[], Iterator[list[str]]],
    skip: int,
    name: str,
    default_currency: str,
    vendor: str | None,
    today: date | None,
    delimiter: str | None,
    encoding: str | None,
    sink: Callable[[list[Any]], None] | None = None,
    *,
    list_prices: bool = True,
    stored_vendor: str | None = None,
) -> ReadResult:
    """Validate every row. With ``sink``, rows are handed over in chunks as they are read and
    never held together (the streaming import): the result's ``rows`` is then empty, and its
    ``key_hashes`` holds one hash per row's (SKU, term, currency) so the caller can find
    repeated SKUs afterwards without keeping the rows (None when the SKUs came in strictly
    ascending order: no key can repeat). With ``sink`` and ``stored_vendor``, the
    sink gets each row in its stored form (:data:`StoredRow`) instead of a VendorRow, with
    ``stored_vendor`` as the vendor of rows that name none."""
    if prof.decimal_mark:
        decimal_mark = prof.decimal_mark
    else:
        cost_at = plan.index["cost"]
        head = islice(opener(), skip, skip + DECIMAL_SAMPLE_ROWS)
        samples = [cells[cost_at] for cells in head if cost_at < len(cells)]
        decimal_mark = _detect_decimal_mark(samples, delimiter)
    records = opener()
    if skip:
        next(islice(records, skip - 1, skip), None)  # past the header
    with no_gc():
        result = _convert(
            records,
            skip,
            plan,
            prof,
            vendor=vendor or prof.vendor,
            vendor_forced=vendor is not None,
            default_currency=default_currency,
            decimal_mark=decimal_mark,
            today=today or date.today(),
            sink=sink,
            list_prices=list_prices,
            stored_vendor=stored_vendor if sink is not None else None,
        )
    if result.total_rows == 0:
        raise FileUnreadable(f"{name} has a header but no price rows.")
    if not result.rows and not result.errors and not result.streamed:
        raise FileUnreadable(
            f"{name} has no usable price rows: all {result.total_rows} rows were skipped "
            "(deleted items, or prices not in effect today)."
        )
    result.delimiter, result.encoding = delimiter, encoding
    return result


def _convert(
    records: Iterator[list[str]],
    skipped_records: int,
    plan: ColumnPlan,
    prof: Profile,
    *,
    vendor: str | None,
    vendor_forced: bool = False,
    default_currency: str,
    decimal_mark: str,
    today: date,
    sink: Callable[[list[Any]], None] | None = None,
    list_prices: bool = True,
    stored_vendor: str | None = None,
) -> ReadResult:
    """Validate and convert rows. This loop is the intake hot path (benchmarks/intake.py): plain
    amounts take a fast path with no regex, lookups of repeated text (currency, term) are cached,
    and each row costs one list and one VendorRow."""
    rows: list[Any] = []  # VendorRows, or StoredRows with ``stored_vendor``
    errors: list[RowError] = []
    index, joined, names = plan.index, plan.joined, plan.names
    width = plan.width
    get = index.get
    i_sku, i_cost = get("sku"), index["cost"]
    i_mpn, i_mfr, i_desc = get("mpn"), get("manufacturer"), get("description")
    i_term, i_bill, i_cur = get("term"), get("billing"), get("currency")
    i_list, i_vendor, i_action = get("list_price"), get("vendor"), get("action")
    if vendor_forced:
        i_vendor = None  # the caller knows better than a "Vendor" column (often the publisher)
    i_start, i_end = get("effective_start"), get("effective_end")
    sku_join = joined.get("sku")
    desc_join = joined.get("description")
    desc_sep = desc_join[1] if desc_join is not None else ""
    desc_pair = tuple(desc_join[0]) if desc_join is not None and len(desc_join[0]) == 2 else None
    mpn_join = joined.get("mpn")
    skip_actions = prof.skip_actions
    # Whether a row's action cell drops it: a handful of distinct cells ("A", "C", "D") per file.
    action_skips: dict[str, bool] = {}
    keep_only = plan.keep_only
    per_term = prof.price_per_term
    file_vendor = vendor or ""
    vendor_counts: Counter[str] = Counter()

    file_currency, file_term = _file_defaults(prof, default_currency)

    quant, half_even = QUANT, ROUND_HALF_EVEN
    dec = Decimal
    fast_comma = decimal_mark == ","
    currency_cache: dict[str, str] = {}
    term_cache: dict[str, str | None] = {}
    billing_cache: dict[str, str | None] = {}
    missing = object()
    date_cache: dict[str, date | ValueError] = {}
    starts: list[date] = []
    total = skipped = duplicates = 0
    new_row = VendorRow
    append = rows.append
    streaming = sink is not None
    key_hashes = array("q")
    as_stored = stored_vendor is not None
    # The stored form wants integer ten-thousandths; a whole-term price is divided as a Decimal.
    plain_units = as_stored and not per_term
    hash_key = _STORED_KEY if as_stored else _ROW_KEY
    sku_of = _STORED_SKU if as_stored else _SKU
    ascending, last_sku = True, ""  # every SKU so far above the one before it
    units = 0
    description_stored = DESCRIPTION_STORED
    units_per, plain_digits = _UNITS_PER, _PLAIN_DIGITS
    want_list = i_list is not None and list_prices
    streamed = 0
    errors_dropped = 0

    def hand_on(chunk: list[Any]) -> None:
        """A chunk to the sink, its keys hashed first. Billing is not stored (vendor_costs has no
        column for it) and the vendor may be filled in later (from the file name), so neither is
        hashed; the caller compares the full key of the few rows whose hash repeats. Hashed a
        chunk at a time, at C speed: hash((sku, term, currency)) of every row."""
        nonlocal streamed, ascending, last_sku
        streamed += len(chunk)
        key_hashes.extend(map(hash, map(hash_key, chunk)))
        if ascending:
            ascending, last_sku = _still_ascending(list(map(sku_of, chunk)), last_sku)
        sink(chunk)  # type: ignore[misc]

    def error(number: int, fld: str | None, text: str) -> None:
        nonlocal errors_dropped
        if streaming and len(errors) >= MAX_ERRORS_KEPT:
            errors_dropped += 1  # counted, not held: a file of 2M bad rows must not fill memory
            return
        column = names.get(fld) if fld else None
        where = f"row {number}, column {column}" if column else f"row {number}"
        errors.append(RowError(number, column, f"{where}: {text}"))

    def cached_date(raw: str) -> date | ValueError:
        got = date_cache.get(raw)
        if got is None:
            try:
                got = _parse_date(raw)
            except ValueError as exc:
                got = exc
            date_cache[raw] = got
        return got

    csv_reader = records if hasattr(records, "line_num") else None
    previous = csv_reader.line_num if csv_reader is not None else skipped_records
    number = previous
    for f in records:
        if csv_reader is not None:
            number, previous = previous + 1, csv_reader.line_num
        else:
            number += 1
        if not f:
            continue
        if len(f) < width:
            f = f + [""] * (width - len(f))
        if sku_join is None:
            sku = f[i_sku].strip()  # type: ignore[index]
        else:
            parts = [f[i].strip() for i in sku_join[0]]
            sku = sku_join[1].join(parts) if all(parts) else ""
        raw_cost = f[i_cost].strip()
        if not sku and not raw_cost:
            filled = sum(1 for c in f if c.strip())
            if filled == 0:
                continue  # an empty row (",,,,")
            if filled == 1:
                total += 1
                skipped += 1  # a heading or note line ("Microsoft cloud", "End of list")
                continue
        total += 1
        if i_action is not None and skip_actions:
            raw_action = f[i_action]
            skip = action_skips.get(raw_action)
            if skip is None:
                skip = action_skips[raw_action] = raw_action.strip().upper() in skip_actions
            if skip:
                skipped += 1
                continue
        if keep_only and any(f[at].strip().casefold() not in ok for at, ok in keep_only):
            skipped += 1
            continue
        bad = False
        if not sku:
            error(number, "sku", "no SKU; every price row needs one")
            bad = True

        # Cost: fast path for plain amounts ("123.45", "0000074.34"), strict parser otherwise.
        symbol_currency = None
        cost = None
        plain = raw_cost.replace(decimal_mark, "", 1)
        try:
            if plain.isdigit() and plain.isascii():
                at = raw_cost.find(decimal_mark)
                places = 0 if at < 0 else len(raw_cost) - at - 1
                if plain_units and places <= 4 and len(plain) <= plain_digits:
                    # Ten-thousandths straight from the digits: with at most 4 decimals nothing
                    # rounds, so this is exactly what the Decimal below would store.
                    units = int(plain) * units_per[places]
                else:
                    cost = dec(raw_cost.replace(",", ".") if fast_comma else raw_cost).quantize(
                        quant, rounding=half_even
                    )
            else:
                cost, symbol_currency = parse_cost(raw_cost, decimal_mark)
                if cost < 0:
                    error(number, "cost", f"{raw_cost!r} is negative; a cost cannot be below zero")
                    bad = True
        except MoneyError as exc:
            text = str(exc)
            if text == "is empty":
                text = "no cost; every price row needs one"
            error(number, "cost", text)
            bad = True
        except InvalidOperation:
            error(number, "cost", f"{raw_cost!r} is too large to be a cost")
            bad = True

        # Currency, term and billing words repeat on every row: each distinct text is
        # normalised once. Only good values are cached; a bad one is reported on every row.
        if i_cur is not None:
            raw_currency = f[i_cur]
            currency = currency_cache.get(raw_currency)
            if currency is None:
                try:
                    currency = currency_cache[raw_currency] = (
                        normalise_currency(raw_currency) if raw_currency.strip() else file_currency
                    )
                except MoneyError as exc:
                    error(number, "currency", str(exc))
                    bad = True
            if symbol_currency and currency and symbol_currency != currency:
                error(
                    number,
                    "cost",
                    f"{raw_cost!r} is in {symbol_currency} but the row's currency is {currency}",
                )
                bad = True
        else:
            currency = symbol_currency or file_currency

        if i_term is not None:
            raw_term = f[i_term]
            term = term_cache.get(raw_term, missing)
            if term is missing:
                try:
                    term = term_cache[raw_term] = (
                        normalise_term(raw_term) if raw_term.strip() else file_term
                    )
                except ValueError as exc:
                    error(number, "term", str(exc))
                    bad = True
        else:
            term = file_term

        if i_bill is not None:
            raw_bill = f[i_bill]
            billing = billing_cache.get(raw_bill, missing)
            if billing is missing:
                try:
                    billing = billing_cache[raw_bill] = normalise_billing(raw_bill)
                except ValueError as exc:
                    error(number, "billing", str(exc))
                    bad = True
        else:
            billing = None

        start = None
        if i_start is not None:
            # Microsoft lists carry past and future prices side by side: only the row in effect
            # today is a cost (vendors.md §4.5).
            raw_start = f[i_start].strip()
            raw_end = f[i_end].strip() if i_end is not None else ""
            start = cached_date(raw_start) if raw_start else date.min
            end = cached_date(raw_end) if raw_end else date.max
            if isinstance(start, ValueError):
                error(number, "effective_start", str(start))
                bad = True
            elif isinstance(end, ValueError):
                error(number, "effective_end", str(end))
                bad = True
            elif not start <= today <= end:
                skipped += 1
                continue

        if bad:
            continue

        # The import stores no list price (vendor_costs has no column for it): it asks for none,
        # ~0.5 µs a row of Decimal work saved (issue 15).
        list_price = (
            _list_price(f[i_list], decimal_mark) if want_list else None  # type: ignore[index]
        )
        if per_term:
            cost, list_price = _per_month(cost, list_price, term, billing)  # type: ignore[arg-type]

        if desc_pair is not None:
            # Two columns (Ingram's description lines 1 and 2): no generator per row.
            first_part, second_part = f[desc_pair[0]].strip(), f[desc_pair[1]].strip()
            description = (
                first_part + desc_sep + second_part
                if first_part and second_part
                else first_part or second_part
            )
        elif desc_join is not None:
            description = desc_sep.join([p for p in [f[i].strip() for i in desc_join[0]] if p])
        else:
            description = f[i_desc].strip() if i_desc is not None else ""
        if i_vendor is not None:
            row_vendor = f[i_vendor].strip() or file_vendor
            vendor_counts[row_vendor] += 1
        else:
            row_vendor = file_vendor

        if mpn_join is not None:
            parts = [f[i].strip() for i in mpn_join[0]]
            mpn = mpn_join[1].join(parts) if all(parts) else None
        else:
            mpn = (f[i_mpn].strip() or None) if i_mpn is not None else None

        manufacturer = (f[i_mfr].strip() or None) if i_mfr is not None else None
        if as_stored:
            if cost is not None:
                units = int(cost.scaleb(4))  # quantized to 4 places above: exact
            append(
                (
                    number,
                    row_vendor or stored_vendor,
                    sku,
                    mpn,
                    manufacturer,
                    description[:description_stored],
                    term,
                    units,
                    currency,
                )
            )
        else:
            append(
                new_row(
                    number,
                    row_vendor,
                    sku,
                    mpn,
                    manufacturer,
                    description,
                    term,  # type: ignore[arg-type]
                    billing,  # type: ignore[arg-type]
                    currency,  # type: ignore[arg-type]
                    cost,  # type: ignore[arg-type]
                    list_price,
                )
            )
        if start is not None:
            starts.append(start)  # type: ignore[arg-type]
        if streaming and len(rows) >= STREAM_CHUNK:
            hand_on(rows)
            rows = []
            append = rows.append

    if streaming and rows:
        hand_on(rows)
        rows = []

    # Duplicates: one C-speed set over the SKUs proves the common case (no SKU twice) without a
    # per-row dict; only files that repeat a SKU (every Microsoft list does, per term) take the
    # keyed pass.
    if not streaming and len(set(map(_SKU, rows))) != len(rows):
        rows, duplicates = _collapse_duplicates(rows, starts or None, error)
    errors.sort(key=_ROW)
    if errors_dropped:
        more = f"{errors_dropped:,} more problems (only the first {MAX_ERRORS_KEPT:,} are listed)"
        errors.append(RowError(0, None, f"… and {more}"))

    result_vendor = vendor_counts.most_common(1)[0][0] if vendor_counts else file_vendor
    result = ReadResult(
        profile=prof.name,
        vendor=result_vendor or "",
        rows=rows,
        errors=errors,
        total_rows=total,
        skipped=skipped,
        duplicates=duplicates,
        decimal_mark=decimal_mark,
    )
    if streaming:
        # SKUs in strictly ascending order (a distributor's list sorted by its part number)
        # cannot repeat: no key can, and there is nothing for the repeated-key check to do.
        result.streamed, result.key_hashes = streamed, None if ascending else key_hashes
    return result


def to_stored(rows: list[VendorRow], vendor: str) -> list[StoredRow]:
    """VendorRows in their stored form (what ``stored_vendor`` reads straight into), with
    ``vendor`` where a row names none. Every cost was quantized to 4 places, so ``scaleb`` is
    exact."""
    return [
        (
            r.row,
            r.vendor or vendor,
            r.sku,
            r.mpn,
            r.manufacturer,
            r.description[:DESCRIPTION_STORED],
            r.term,
            int(r.cost.scaleb(4)),
            r.currency,
        )
        for r in rows
    ]


def repeated_rows(key_hashes: Any, numbers: Any) -> list[int]:
    """The row numbers (``numbers``, in the order of ``key_hashes``) whose key hash occurs more
    than once: the only rows a repeated-SKU check must compare in full. Bounded memory: a 16 MiB
    bitmap flags a slot seen before (sorting 2,000,000 hashes would make as many int objects,
    ~70 MB); only the few rows that land on a flagged slot are counted exactly in a second pass.
    The hashes are Python's, salted per process: the process that made them must run this."""
    bits = 1 << 27
    mask = bits - 1
    seen = bytearray(bits >> 3)
    maybe: set[int] = set()
    for h in key_hashes:
        slot = h & mask
        byte, bit = slot >> 3, 1 << (slot & 7)
        if seen[byte] & bit:
            maybe.add(slot)
        else:
            seen[byte] |= bit
    del seen
    if not maybe:
        return []
    counted: dict[int, int] = {}
    for h in key_hashes:
        if h & mask in maybe:
            counted[h] = counted.get(h, 0) + 1
    repeated = {h for h, n in counted.items() if n > 1}
    if not repeated:
        return []
    return [n for h, n in zip(key_hashes, numbers, strict=True) if h in repeated]


# The steps of _convert that are not on every row's path. The per-row checks stay inline above:
# the loop is the intake hot path and a call per row per check would show in benchmarks/intake.py.


def _file_defaults(prof: Profile, default_currency: str) -> tuple[str, str | None]:
    """The currency and term of rows that do not say: the profile's, else the default."""
    try:
        file_currency = normalise_currency(prof.currency or default_currency)
    except MoneyError as exc:
        raise FileUnreadable(f"the default currency is not usable: {exc}.") from exc
    try:
        file_term = normalise_term(prof.term) if prof.term else None
    except ValueError as exc:  # pragma: no cover - validated in profile_from_config
        raise FileUnreadable(str(exc)) from exc
    return file_currency, file_term


def _list_price(raw: str, decimal_mark: str) -> Decimal | None:
    raw_list = raw.strip()
    if not raw_list:
        return None
    plain = raw_list.replace(decimal_mark, "", 1)
    if plain.isdigit() and plain.isascii():
        # Ingram's "0001234.50" on every row: the regex parser would give the same value.
        text = raw_list.replace(",", ".") if decimal_mark == "," else raw_list
        try:
            return Decimal(text).quantize(QUANT, rounding=ROUND_HALF_EVEN)
        except InvalidOperation:
            return None  # too large to be a price: informational only, as below
    try:
        list_price, _ = parse_cost(raw_list, decimal_mark)
    except MoneyError:
        return None  # informational only: a bad MSRP never blocks a cost import
    return list_price


def _per_month(
    cost: Decimal, list_price: Decimal | None, term: str | None, billing: str | None
) -> tuple[Decimal, Decimal | None]:
    """vendors.md §4.5/§5.4: UnitPrice is for the whole term; the PSA cost is monthly."""
    months = TERM_MONTHS.get(term) if isinstance(term, str) else None
    if months and months > 1 and billing != "OneTime":
        cost = (cost / months).quantize(QUANT, rounding=ROUND_HALF_EVEN)
        if list_price is not None:
            list_price = (list_price / months).quantize(QUANT, rounding=ROUND_HALF_EVEN)
    return cost, list_price


_SKU = attrgetter("sku")
_ROW = attrgetter("row")
_ROW_KEY = attrgetter("sku", "term", "currency")
_STORED_KEY = itemgetter(2, 6, 8)  # a StoredRow's (sku, term, currency)
_STORED_SKU = itemgetter(2)


def _still_ascending(skus: list[str], last: str) -> tuple[bool, str]:
    """Whether a chunk's SKUs (never empty: a row without one is an error) each sort above the
    one before, the first above ``last`` (the previous chunk's last; "" sorts below any SKU):
    compared at C speed, and stopping at the first that does not."""
    return last < skus[0] and all(map(lt, skus, islice(skus, 1, None))), skus[-1]


def _collapse_duplicates(
    rows: list[VendorRow],
    starts: list[date] | None,
    error: Callable[[int, str | None, str], None],
) -> tuple[list[VendorRow], int]:
    """One row per (vendor, SKU, term, billing, currency). Identical repeats collapse; a repeat
    with another cost is an error naming both rows, except in effective-dated files (Microsoft),
    where overlapping ranges resolve to the one that started last (vendors.md §4.5)."""
    kept: list[VendorRow] = []
    kept_start: list[date] = []
    seen: dict[tuple, int] = {}
    duplicates = 0
    for i, row in enumerate(rows):
        key = (row.vendor, row.sku, row.term, row.billing, row.currency)
        earlier = seen.get(key)
        start = starts[i] if starts is not None else None
        if earlier is None:
            seen[key] = len(kept)
            kept.append(row)
            if start is not None:
                kept_start.append(start)
            continue
        first = kept[earlier]
        if first.cost == row.cost:
            duplicates += 1
            continue
        if start is not None and kept_start[earlier] != start:
            if start > kept_start[earlier]:
                kept[earlier], kept_start[earlier] = row, start
            continue
        label = f"{row.sku!r}" + (f" ({row.term})" if row.term else "")
        error(
            row.row,
            "cost",
            f"SKU {label} appears twice with different costs: row {first.row} says "
            f"{first.cost.normalize():f} {first.currency}, row {row.row} says "
            f"{row.cost.normalize():f} {row.currency}",
        )
    return kept, duplicates
