"""Stage 2: which profile a file follows and where its columns are (the column plan)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice

from costrecon_daemon.vendors.profiles import (
    Profile,
    header_key,
)
from costrecon_daemon.vendors.rows import (
    HEADER_SEARCH_ROWS,
    PEEK_ROWS,
    FileUnreadable,
)


@dataclass
class ColumnPlan:
    index: dict[str, int]  # field -> column position
    joined: dict[str, tuple[tuple[int, ...], str]]
    names: dict[str, str]  # field -> column name for messages
    width: int
    keep_only: tuple[tuple[int, frozenset[str]], ...] = ()  # (column, accepted casefolded values)


def lookup_profile(name: str | None, all_profiles: Mapping[str, Profile]) -> Profile | None:
    if name is None:
        return None
    try:
        return all_profiles[name]
    except KeyError:
        known = ", ".join(sorted(all_profiles))
        raise FileUnreadable(
            f"there is no price-file profile named {name!r} (known: {known})."
        ) from None


def match_header(prof: Profile, cells: list[str]) -> ColumnPlan | None:
    """Resolve a profile's columns against a header row; None if a required column is missing."""
    positions: dict[str, int] = {}
    for i, cell in enumerate(cells):
        positions.setdefault(header_key(cell), i)

    def find(ref: str | int | tuple[str | int, ...]) -> int | None:
        for alt in ref if isinstance(ref, tuple) else (ref,):
            if isinstance(alt, int):
                return alt if alt < len(cells) else None
            found = positions.get(header_key(alt))
            if found is not None:
                return found
        return None

    index: dict[str, int] = {}
    names: dict[str, str] = {}
    for fld, ref in prof.columns.items():
        found = find(ref)
        if found is not None:
            index[fld] = found
            names[fld] = str(cells[found]).replace("\ufeff", "").strip()
    joined: dict[str, tuple[tuple[int, ...], str]] = {}
    for fld, (refs, sep) in prof.joined.items():
        parts = [find(r) for r in refs]
        if any(p is None for p in parts):
            continue
        joined[fld] = (tuple(p for p in parts if p is not None), sep)
        names[fld] = "+".join(str(cells[p]).strip() for p in parts if p is not None)
    if "sku" not in index and "sku" not in joined and "mpn" in index:
        index["sku"], names["sku"] = index["mpn"], names["mpn"]  # a file keyed by MPN only
    if ("sku" not in index and "sku" not in joined) or "cost" not in index:
        return None
    keep = tuple(
        (at, accepted) for ref, accepted in prof.keep_only.items() if (at := find(ref)) is not None
    )
    width = (
        max(
            [
                *index.values(),
                *(p for parts, _ in joined.values() for p in parts),
                *(a for a, _ in keep),
            ]
        )
        + 1
    )
    return ColumnPlan(index, joined, names, width, keep)


def _positional_plan(prof: Profile) -> ColumnPlan:
    index = {f: r for f, r in prof.columns.items() if isinstance(r, int)}
    # A tuple of positions in a headerless profile means "first non-empty": handled as a join of
    # one column here (the first position), the rest being fallbacks people rarely need.
    for f, r in prof.columns.items():
        if isinstance(r, tuple) and r and isinstance(r[0], int):
            index[f] = r[0]
    joined = {f: (tuple(int(p) for p in refs), sep) for f, (refs, sep) in prof.joined.items()}
    names = {f: f"{prof.labels.get(f, f)} (field {i + 1})" for f, i in index.items()}
    for f, (parts, _) in joined.items():
        names[f] = f"{prof.labels.get(f, f)} (fields {'+'.join(str(p + 1) for p in parts)})"
    keep = tuple((r, a) for r, a in prof.keep_only.items() if isinstance(r, int))
    width = (
        max(
            [
                *index.values(),
                *(p for parts, _ in joined.values() for p in parts),
                *(a for a, _ in keep),
            ]
        )
        + 1
    )
    return ColumnPlan(index, joined, names, width, keep)


def choose_profile(
    name: str,
    first: list[tuple[int, list[str]]],
    all_profiles: Mapping[str, Profile],
    sniffed: str | None,
    *,
    workbook: bool = False,
) -> Profile:
    """Header signature → file name → headerless shape → generic header synonyms."""
    if not first:
        raise FileUnreadable(f"{name} has no rows.")
    lowered = name.lower()
    # 1. A header row with a profile's signature headers (most specific first).
    signed = sorted(
        (p for p in all_profiles.values() if p.has_header and p.signature),
        key=lambda p: -len(p.signature),
    )
    for _, cells in first:
        keys = {header_key(c) for c in cells}
        for prof in signed:
            if prof.signature <= keys and match_header(prof, cells) is not None:
                return prof
    # 2. The file name (longest fragment first, so STDPRICE_FULL.TXT is not PRICE.TXT).
    by_name = sorted(
        ((frag, p) for p in all_profiles.values() for frag in (*p.file_names, p.name.lower())),
        key=lambda fp: -len(fp[0]),
    )
    for frag, prof in by_name:
        if (
            prof.name != "generic"
            and frag
            and frag in lowered
            and (
                _fits_shape(prof, first[0][1])
                if not prof.has_header
                else any(match_header(prof, c) for _, c in first)
            )
        ):
            return prof
    # 3. Headerless layouts recognised by their shape.
    cells = first[0][1]
    for prof in all_profiles.values():
        if prof.has_header or prof.field_count is None:
            continue
        if not workbook and prof.delimiter and prof.delimiter != sniffed:
            continue
        low, high = prof.field_count
        if not low <= len(cells) <= high:
            continue
        action = prof.columns.get("action")
        if isinstance(action, int) and cells[action].strip().upper() not in {"A", "C", "D"}:
            continue
        return prof
    # 4. Any header with a SKU (or MPN) column and a cost column.
    for prof in all_profiles.values():
        if prof.has_header and not prof.signature:
            for _, cells in first:
                if match_header(prof, cells) is not None:
                    return prof
    raise FileUnreadable(
        f"{name} has no header row costrecon recognises: it needs a SKU (or part number) column "
        "and a cost column, or a vendor profile named in the config or in the file name."
    )


def _fits_shape(prof: Profile, cells: list[str]) -> bool:
    if prof.field_count is None:
        return True
    low, high = prof.field_count
    return low <= len(cells) <= high


def locate_columns(
    prof: Profile, opener: Callable[[], Iterator[list[str]]], name: str
) -> tuple[ColumnPlan, int]:
    """Find the header row for ``prof`` within the first rows: the column plan and how many raw
    records (blank ones included) precede the data."""
    if not prof.has_header:
        return _positional_plan(prof), 0
    seen = 0
    for position, cells in enumerate(islice(opener(), PEEK_ROWS), start=1):
        plan = match_header(prof, cells)
        if plan is not None:
            return plan, position
        if any(str(c).strip() for c in cells):
            seen += 1
            if seen >= HEADER_SEARCH_ROWS:
                break
    raise FileUnreadable(
        f"{name} does not have the header the {prof.name} profile expects ({needed_columns(prof)})."
    )


def needed_columns(prof: Profile) -> str:
    def show(ref: object) -> str:
        return " or ".join(repr(r) for r in ref) if isinstance(ref, tuple) else repr(ref)

    needed = []
    for fld in ("sku", "cost"):
        if fld in prof.columns:
            needed.append(f"{fld}: {show(prof.columns[fld])}")
        elif fld in prof.joined:
            needed.append(f"{fld}: {' + '.join(repr(r) for r in prof.joined[fld][0])}")
    return "; ".join(needed)
