"""Match vendor rows to PSA catalogue items (DESIGN.md §3 "Vendor costs have provenance").

Order, strongest first (vendors.md §5.2):

1. a saved mapping ``(vendor, SKU, term) → item`` — a person's decision; a mapping saved with no
   term (``""``/None, as ``ItemMapping`` stores it) matches that SKU in any term;
2. the row's SKU = the item's vendor SKU (CW ``vendorSku``);
3. the row's manufacturer part number = the item's MPN, both normalised (case, spaces, dashes,
   dots, slashes, known HP ``#ABA``-style regional suffixes) and scoped by manufacturer when both
   sides name one;
4. the row's SKU (then its MPN) = the item's PSA identifier.

A key that finds two or more items is **ambiguous**: no match, the candidates are reported, and
weaker keys are not tried (a duplicated catalogue entry is for a person to sort out). Fuzzy name
similarity only ever produces :meth:`Matcher.suggest` ions for a person to confirm.

**Term is part of the key for cloud SKUs** (vendors.md §5.3). A row with a term (P1M, P1Y…)
matches only items whose term is the same; an item's term is, in order: its explicit ``term``; a
term code or suffix in its identifier (``…:P1Y``, ``M365BP-MTH``, ``-M``/``-MON``/``-MONTHLY`` →
P1M, ``-A``/``-ANN``/``-ANNUAL``/``-YR`` → P1Y, ``-3Y`` → P3Y); a term word in its name
("(Monthly)", "Annual", "1 year", "NCE COM MTH"; phrases about *billing* such as "billed monthly"
are ignored). An item whose term cannot be told is never matched automatically to a row that has
one — a monthly and an annual price for the same SKU would otherwise both land on it; a person
confirms it once through a suggestion and the saved mapping does the rest. A row without a term
(hardware) matches items whatever their term.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, Protocol

from costrecon_daemon.runtime import no_gc
from costrecon_daemon.vendors.normalise import (
    manufacturers_agree,
    normalise_manufacturer,
    normalise_mpn,
    normalise_sku,
    normalise_term,
)
from costrecon_daemon.vendors.rows import StoredRow, VendorRow

__all__ = [
    "CatalogKey",
    "Mapping",
    "MatchResult",
    "Matcher",
    "SavedMapping",
    "Suggestion",
    "item_term",
]


@dataclass(frozen=True, slots=True)
class CatalogKey:
    item_id: int
    identifier: str
    name: str
    vendor_sku: str | None = None
    mpn: str | None = None
    manufacturer: str | None = None
    term: str | None = None  # explicit term (P1M/P1Y…) when the PSA or a person knows it


@dataclass(frozen=True, slots=True)
class Mapping:
    """A confirmed mapping: this vendor's SKU (in this term; None/"" = any) is that item."""

    vendor: str
    sku: str
    term: str | None
    item_id: int


SavedMapping = Mapping  # the same thing, for modules that also use collections.abc.Mapping


class MatchResult(NamedTuple):
    """A tuple (cheap to make 200,000 of): ``(item_id, method, candidates)``."""

    item_id: int | None
    method: str | None  # "mapping" | "vendor_sku" | "mpn" | "identifier" | None
    candidates: tuple[int, ...] = ()  # the items an ambiguous key found (item_id is then None)

    @property
    def ambiguous(self) -> bool:
        return self.item_id is None and len(self.candidates) > 1


@dataclass(frozen=True, slots=True)
class Suggestion:
    item_id: int
    score: float  # 0-100
    reason: str  # for people: "name 94% similar: 'Microsoft 365 Business Basic (Monthly)'"


class RowLike(Protocol):
    """What matching reads of a row (read only: a stored row's view is a tuple)."""

    @property
    def vendor(self) -> str: ...
    @property
    def sku(self) -> str: ...
    @property
    def mpn(self) -> str | None: ...
    @property
    def manufacturer(self) -> str | None: ...
    @property
    def description(self) -> str: ...
    @property
    def term(self) -> str | None: ...


NO_MATCH = MatchResult(None, None)

# ----------------------------------------------------------------------------------- item terms

_TERM_CODES = {"P1M": "P1M", "P1Y": "P1Y", "P2Y": "P2Y", "P3Y": "P3Y"}
_ID_SUFFIX = {
    "M": "P1M", "MTH": "P1M", "MON": "P1M", "MO": "P1M", "MONTHLY": "P1M", "1M": "P1M",
    "A": "P1Y", "ANN": "P1Y", "ANNUAL": "P1Y", "YR": "P1Y", "1Y": "P1Y", "12M": "P1Y", "Y": "P1Y",
    "2Y": "P2Y", "3Y": "P3Y", "36M": "P3Y",
}  # fmt: skip
_ID_SPLIT = re.compile(r"[-_:/\s.()]+")
_BILLING_PHRASE = re.compile(
    r"\b(?:billed|billing|paid|payment|pay)\s+(?:monthly|annually|yearly)\b"
    r"|\b(?:monthly|annual|yearly)\s+(?:billing|payments?|invoic\w*)\b",
    re.IGNORECASE,
)
_NAME_TERMS = (
    ("P1M", re.compile(r"\b(?:monthly|month[- ]to[- ]month|1[- ]month|mth|p1m)\b", re.IGNORECASE)),
    (
        "P1Y",
        re.compile(
            r"\b(?:annual|annually|yearly|1[- ]year|12[- ]months?|ann|p1y)\b", re.IGNORECASE
        ),
    ),
    ("P3Y", re.compile(r"\b(?:3[- ]years?|36[- ]mo(?:nths?)?|triennial|p3y)\b", re.IGNORECASE)),
)

_ID_ENDINGS = tuple(sep + word for sep in "-_:/ .(" for word in _ID_SUFFIX)


def item_term(item: CatalogKey) -> str | None:
    """The term of a catalogue item, by the rule in the module docstring; None when unknown."""
    if item.term:
        try:
            return normalise_term(item.term)
        except ValueError:
            return None
    identifier = item.identifier.upper().rstrip(")")
    if "P1" in identifier or "P2" in identifier or "P3" in identifier:
        for token in _ID_SPLIT.split(identifier):
            if token in _TERM_CODES:
                return _TERM_CODES[token]
    if identifier.endswith(_ID_ENDINGS):  # one C call rules out most identifiers
        tokens = _ID_SPLIT.split(identifier)
        if len(tokens) > 1 and tokens[-1] in _ID_SUFFIX:
            return _ID_SUFFIX[tokens[-1]]
    n = item.name.casefold()
    if not (
        "month" in n or "mth" in n or "ann" in n or "year" in n or "p1" in n or "p3" in n
        or "36" in n or "triennial" in n
    ):  # fmt: skip
        return None  # most items (hardware) name no term: skip the regexes
    name = _BILLING_PHRASE.sub(" ", item.name)
    found = {code for code, pattern in _NAME_TERMS if pattern.search(name)}
    return found.pop() if len(found) == 1 else None


# --------------------------------------------------------------------------------------- matcher


class Matcher:
    """Built once per import from the catalogue mirror and the saved mappings; ``match`` is a few
    dict lookups per row (benchmarks/intake.py)."""

    def __init__(self, items: Iterable[CatalogKey], mappings: Iterable[Mapping] = ()) -> None:
        self._items: dict[int, CatalogKey] = {}
        self._terms: dict[int, str | None] = {}
        self._mfr: dict[int, str] = {}
        self._by_vendor_sku: dict[str, list[int]] = {}
        self._by_mpn: dict[str, list[int]] = {}
        self._by_identifier: dict[str, list[int]] = {}
        for item in items:
            iid = item.item_id
            self._items[iid] = item
            self._terms[iid] = item_term(item)
            self._mfr[iid] = normalise_manufacturer(item.manufacturer)
            if item.vendor_sku:
                _add(self._by_vendor_sku, normalise_sku(item.vendor_sku), iid)
            if item.mpn:
                _add(self._by_mpn, normalise_mpn(item.mpn), iid)
            _add(self._by_identifier, normalise_sku(item.identifier), iid)
        self._mappings: dict[tuple[str, str, str | None], int] = {}
        for m in mappings:
            term = normalise_term(m.term) if m.term else None
            self._mappings[(_vendor_key(m.vendor), normalise_sku(m.sku), term)] = m.item_id
        self._vendor_keys: dict[str, str] = {}
        # Every SKU key any exact rule can find: a row whose SKU and MPN keys are in none of the
        # indexes is NO_MATCH without running ``match`` (see ``match_all``).
        self._sku_keys = (
            set(self._by_vendor_sku) | set(self._by_identifier) | {k[1] for k in self._mappings}
        )
        self._loose: set[str] | None = None  # every key, loosened (``candidates``)
        self._fuzzy: tuple[list[str], list[int]] | None = None
        self._mpn_list: list[str] | None = None  # the MPN keys, sorted (suggestions)

    def __len__(self) -> int:
        return len(self._items)

    # Pickled for the reader process (intake/reading.py), once per big file: the catalogue as
    # plain tuples and without the lazy suggestion caches. A catalogue of 50,000 items pickled as
    # frozen dataclasses took 0.7 s to send and load; as tuples it is a fraction of that.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_items"] = [
            (k.item_id, k.identifier, k.name, k.vendor_sku, k.mpn, k.manufacturer, k.term)
            for k in self._items.values()
        ]
        state["_fuzzy"] = state["_mpn_list"] = state["_loose"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_items"] = {fields[0]: CatalogKey(*fields) for fields in state["_items"]}
        self.__dict__.update(state)

    def term_of(self, item_id: int) -> str | None:
        """The term the matcher derived for an item (for showing people why a row did not match)."""
        return self._terms.get(item_id)

    # ----------------------------------------------------------------------------- exact keys

    def match(self, row: RowLike) -> MatchResult:
        # The key normalisations (normalise_sku / normalise_mpn) are inlined here: this runs for
        # every row of every import, and the function calls were a third of its time.
        term = row.term
        sku = row.sku.strip().casefold()
        if " " in sku:
            sku = "".join(sku.split())
        if self._mappings:
            vendor = self._vendor_keys.get(row.vendor)
            if vendor is None:
                vendor = self._vendor_keys[row.vendor] = _vendor_key(row.vendor)
            hit = self._mappings.get((vendor, sku, term))
            if hit is None and term is not None:
                hit = self._mappings.get((vendor, sku, None))
            if hit is not None and hit in self._items:
                return MatchResult(hit, "mapping")

        ids = self._by_vendor_sku.get(sku)
        if ids is not None:
            found = self._decide(ids, term, None, "vendor_sku")
            if found is not None:
                return found

        raw_mpn = row.mpn
        if raw_mpn:
            mpn = normalise_mpn(raw_mpn)
            ids = self._by_mpn.get(mpn)
            if ids is not None:
                found = self._decide(ids, term, normalise_manufacturer(row.manufacturer), "mpn")
                if found is not None:
                    return found

        by_identifier = self._by_identifier
        ids = by_identifier.get(sku)
        if ids is None and raw_mpn:
            mpn_as_id = raw_mpn.strip().casefold()
            if " " in mpn_as_id:
                mpn_as_id = "".join(mpn_as_id.split())
            ids = by_identifier.get(mpn_as_id)
        if ids is not None:
            found = self._decide(ids, term, None, "identifier")
            if found is not None:
                return found
        return NO_MATCH

    def match_all(self, rows: Iterable[RowLike]) -> list[MatchResult]:
        rows = rows if isinstance(rows, list) else list(rows)
        match = self.match
        # 200,000 new results would make the cyclic GC rescan every row again and again.
        with no_gc():
            candidates = self._candidates(rows)
            if candidates is None:
                return [match(r) for r in rows]
            out = [NO_MATCH] * len(rows)
            for i in candidates:
                out[i] = match(rows[i])
            return out

    def _candidates(self, rows: list[RowLike]) -> list[int] | None:
        """The positions of the rows ``match`` could match (see :meth:`candidates`)."""
        if len(rows) < 64:
            return None
        return self.candidates(map(_SKU, rows), map(_MPN, rows), len(rows))

    def candidates(
        self, skus: Iterable[str], mpns: Iterable[str | None], count: int
    ) -> list[int] | None:
        """The positions (sorted) of the rows, given as their ``count`` SKUs and MPNs, that
        ``match`` could match: a superset of the rows it does match, found a chunk at a time at C
        speed. A distributor's file is nearly all SKUs the catalogue does not hold (issue 15), so
        the keys of every row are computed at once on the joined text instead of row by row.
        None when the bulk keys could differ from what ``match`` computes (whitespace other than
        spaces, a line break inside a key): every row must then go through ``match``."""
        if count == 0:
            return []
        mpns = mpns if isinstance(mpns, list) else list(mpns)
        try:
            mpn_text = "\n".join(mpns)  # type: ignore[arg-type]
        except TypeError:  # a row without an MPN: None -> "None", at worst a candidate
            mpn_text = "\n".join(map(str, mpns))
        text = "\n".join(skus) + "\n" + mpn_text
        if text.count("\n") != 2 * count - 1:
            return None
        # ``match`` case-folds each key; case folding maps character by character (no context,
        # unlike lower()), so folding the joined text folds every line. For ASCII text lower()
        # is the same mapping, and faster.
        if text.isascii():
            text, odd = text.lower(), _ODD_SPACE
        else:
            text, odd = text.casefold(), _ODD_SPACES
        if any(ch in text for ch in odd):
            # ``match`` drops every kind of whitespace where a key holds a space, and strips
            # the ends: where spaces are the only whitespace, dropping spaces is the same.
            return None
        # One loose key per SKU and per MPN: without spaces (what every exact key drops) and
        # without the - . / _ that MPN keys drop, looked up among the catalogue's keys loosened
        # the same way. Whatever key ``match`` finds, its loose form is there: a superset.
        keys = text.translate(_LOOSE).split("\n")  # on 500 kB, 2x five replace()s
        index = self._loose_keys()
        found: set[int] = set()
        lists = [keys]
        if "#" in text:
            # normalise_mpn drops a known HP regional suffix ("#ABA") after the last '#': the
            # key before that '#' ('#' is never dropped, so it is the same '#'). Keys without a
            # '#' give "", a candidate only where a catalogue key loosens to "".
            lists.append([k.rpartition("#")[0] for k in keys])
        for loose in lists:
            # One C pass: nearly every chunk of a distributor's file finds nothing.
            hits = index.intersection(loose)
            if hits:
                # One pass over the chunk for all of them: a search per key found (list.index
                # until it fails) walked the chunk once per key, quadratic for a file of mostly
                # catalogue SKUs (the 200,000-row benchmark took minutes).
                found.update(at % count for at, key in enumerate(loose) if key in hits)
        return sorted(found)

    def _loose_keys(self) -> set[str]:
        if self._loose is None:
            every = self._sku_keys.union(self._by_mpn, self._by_identifier)
            # A key of punctuation only ("--") loosens to "": then every row is a candidate,
            # slower but never a match lost.
            self._loose = {_loosen(k) for k in every}
        return self._loose

    def _decide(
        self, ids: list[int], term: str | None, manufacturer: str | None, method: str
    ) -> MatchResult | None:
        if len(ids) == 1 and not manufacturer and (term is None or self._terms[ids[0]] == term):
            return MatchResult(ids[0], method)
        if term is not None:
            terms = self._terms
            ids = [i for i in ids if terms[i] == term]
        if manufacturer and len(ids) > 0:
            mfr = self._mfr
            ids = [i for i in ids if manufacturers_agree(manufacturer, mfr[i])]
            if len(ids) > 1:  # several left: prefer the ones that name the same manufacturer
                same = [i for i in ids if mfr[i] and manufacturers_agree(manufacturer, mfr[i])]
                ids = same or ids
        if len(ids) == 1:
            return MatchResult(ids[0], method)
        if len(ids) > 1:
            return MatchResult(None, method, tuple(ids))
        return None

    # ------------------------------------------------------------------------------ suggestions

    def suggest(self, row: RowLike, limit: int = 5) -> list[Suggestion]:
        """Items a person might confirm for an unmatched row, best first. Never applied
        automatically. Items of another (known) term are left out; a different manufacturer
        costs points."""
        from rapidfuzz import fuzz, process

        if self._fuzzy is None:
            ids = list(self._items)
            self._fuzzy = ([_name_key(self._items[i].name) for i in ids], ids)
        names, ids = self._fuzzy
        query = _name_key(row.description or row.mpn or row.sku)
        row_mfr = normalise_manufacturer(row.manufacturer)
        best: dict[int, Suggestion] = {}

        def offer(item_id: int, score: float, reason: str) -> None:
            item_term_ = self._terms[item_id]
            if row.term is not None and item_term_ is not None and item_term_ != row.term:
                return
            if row_mfr and not manufacturers_agree(row_mfr, self._mfr[item_id]):
                score -= 15
                reason += "; different manufacturer"
            if item_term_ is None and row.term is not None:
                reason += f"; item has no term, row is {row.term}"
            if item_id not in best or best[item_id].score < score:
                best[item_id] = Suggestion(item_id, round(max(score, 0.0), 1), reason)

        if query:
            hits = process.extract(
                query, names, scorer=fuzz.token_set_ratio, limit=limit * 4, score_cutoff=50
            )
            for _, set_score, position in hits:
                item_id = ids[position]
                # token_set_ratio calls "Business Basic" and "Business Basic EEA (no Teams)" equal;
                # averaging with token_sort_ratio keeps extra words (a different SKU) costing.
                score = (set_score + fuzz.token_sort_ratio(query, names[position])) / 2
                offer(item_id, score, f"name {score:.0f}% similar: {self._items[item_id].name!r}")

        mpn = normalise_mpn(row.mpn)
        if len(mpn) >= 5:
            # Catalogue MPNs that extend this one, or that it extends: found by bisecting the
            # sorted keys and by looking up its own prefixes, not by comparing every key (a page
            # of 200 unmatched rows against a big catalogue must stay well under 100 ms).
            if self._mpn_list is None:
                self._mpn_list = sorted(self._by_mpn)
            keys = self._mpn_list
            close: list[str] = []
            at = bisect_left(keys, mpn)
            while at < len(keys) and keys[at].startswith(mpn):
                if keys[at] != mpn:
                    close.append(keys[at])
                at += 1
            close += [mpn[:n] for n in range(5, len(mpn)) if mpn[:n] in self._by_mpn]
            for key in close:
                for item_id in self._by_mpn[key]:
                    raw = self._items[item_id].mpn
                    offer(item_id, 85.0, f"part number {raw!r} is close to {row.mpn!r}")

        ranked = sorted(best.values(), key=lambda s: (-s.score, s.item_id))
        return ranked[:limit]


_LOOSE = str.maketrans("", "", " -./_")


def _loosen(key: str) -> str:
    return key.replace("-", "").replace(".", "").replace("/", "").replace("_", "")


_SKU = attrgetter("sku")
_MPN = attrgetter("mpn")
_ODD_SPACE = ("\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")
# Every character str.split() treats as whitespace, but for the space and the line break.
_ODD_SPACES = (
    *_ODD_SPACE,
    *"\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000",
    *map(chr, range(0x2000, 0x200B)),
)


def split_chunk(
    rows: list[VendorRow], matcher: Matcher | None, fallback_vendor: str, numbers: array[int]
) -> tuple[list[VendorRow], list[MatchResult] | None, list[tuple[VendorRow, MatchResult]]]:
    """A chunk of an import's rows as it is stored: the vendor the file's name gives where a row
    names none, the row numbers noted in ``numbers`` (beside the reader's key hashes, same
    order), then the rows no item matched with their results, and the matched rows. The results
    are None when nothing in the chunk matched (nearly every chunk of a distributor's file,
    counted at C speed): there is no method to store then."""
    for r in rows:
        if not r.vendor:
            r.vendor = fallback_vendor
    numbers.extend([r.row for r in rows])
    results = matcher.match_all(rows) if matcher is not None else None
    if results is None or results.count(NO_MATCH) == len(results):
        return rows, None, []
    loose: list[VendorRow] = []
    loose_results: list[MatchResult] = []
    matched: list[tuple[VendorRow, MatchResult]] = []
    for r, m in zip(rows, results, strict=True):
        if m.item_id is not None:
            matched.append((r, m))
        else:
            loose.append(r)
            loose_results.append(m)
    return loose, loose_results, matched


class _Stored(NamedTuple):
    """A stored row (``convert.StoredRow``) as ``match`` reads it: by attribute."""

    row: int
    vendor: str
    sku: str
    mpn: str | None
    manufacturer: str | None
    description: str
    term: str | None
    units: int
    currency: str


_STORED_SKU = itemgetter(2)
_STORED_MPN = itemgetter(3)
_STORED_NUMBER = itemgetter(0)


def split_stored(
    rows: list[StoredRow], matcher: Matcher | None, numbers: array[int]
) -> tuple[list[StoredRow], list[MatchResult] | None, list[tuple[StoredRow, MatchResult]]]:
    """:func:`split_chunk` for rows already in their stored form (the reader process: the
    vendor is filled in by the reader). Only the rows :meth:`Matcher.candidates` finds go
    through ``match``; the others are NO_MATCH, which is what ``match`` gives them."""
    numbers.extend(map(_STORED_NUMBER, rows))
    if matcher is None:
        return rows, None, []
    n = len(rows)
    with no_gc():
        found = (
            matcher.candidates(map(_STORED_SKU, rows), map(_STORED_MPN, rows), n)
            if n >= 64
            else None
        )
        positions: Iterable[int] = range(n) if found is None else found
        hits: list[tuple[int, MatchResult]] = []
        for i in positions:
            m = matcher.match(_Stored._make(rows[i]))
            if m != NO_MATCH:
                hits.append((i, m))
        if not hits:
            return rows, None, []
        results = [NO_MATCH] * n
        for i, m in hits:
            results[i] = m
        # Cut the matched rows out by slices (C speed), not by a pass over every row.
        loose: list[StoredRow] = []
        loose_results: list[MatchResult] = []
        matched: list[tuple[StoredRow, MatchResult]] = []
        after = 0
        for i, m in hits:
            if m.item_id is None:
                continue  # ambiguous: stays loose, with its method
            loose += rows[after:i]
            loose_results += results[after:i]
            matched.append((rows[i], m))
            after = i + 1
        loose += rows[after:]
        loose_results += results[after:]
    return loose, loose_results, matched


def _add(index: dict[str, list[int]], key: str, item_id: int) -> None:
    if not key:
        return
    bucket = index.get(key)
    if bucket is None:
        index[key] = [item_id]
    elif item_id not in bucket:
        bucket.append(item_id)


def _vendor_key(vendor: str | None) -> str:
    return " ".join((vendor or "").casefold().split())


_NAME_NOISE = re.compile(r"[^\w]+")
_TERM_NOISE = re.compile(
    r"\b(?:monthly|annual|annually|yearly|mth|ann|nce|com|p1m|p1y|p3y|1 year|1 month|month|year)\b"
)


def _name_key(text: str | None) -> str:
    """Names as compared for suggestions: case-folded, punctuation and term words dropped (the term
    is compared separately and exactly)."""
    text = _NAME_NOISE.sub(" ", (text or "").casefold())
    return " ".join(_TERM_NOISE.sub(" ", text).split())


def catalog_keys_from_records(records: Sequence[object]) -> list[CatalogKey]:
    """CatalogKeys from objects with ``id``/``item_id``, ``identifier``, ``name`` and the optional
    ``vendor_sku``, ``mpn``, ``manufacturer``, ``term`` attributes (e.g. ``db.CatalogItem``
    rows)."""
    keys = []
    for r in records:
        item_id = getattr(r, "item_id", None)
        if item_id is None:
            item_id = r.id  # type: ignore[attr-defined]
        keys.append(
            CatalogKey(
                item_id=int(item_id),
                identifier=str(getattr(r, "identifier", "") or ""),
                name=str(getattr(r, "name", "") or ""),
                vendor_sku=getattr(r, "vendor_sku", None),
                mpn=getattr(r, "mpn", None),
                manufacturer=getattr(r, "manufacturer", None),
                term=getattr(r, "term", None),
            )
        )
    return keys
