"""Price-file intake speed: parse + validate + match (+ commit, once intake offers it).

    /work/venv/bin/python benchmarks/intake.py [--rows 200000] [--items 50000] [--xlsx-rows 50000] [--repeat 3]

Generates a generic distributor CSV of ``--rows`` rows (SKU, MPN, description, manufacturer, cost,
currency, term; ~5 % of amounts written with thousands separators, ~10 % cloud rows with a term)
and ``--items`` catalogue keys that about half the rows match (by vendor SKU, MPN or identifier).
Prints, best of ``--repeat`` runs (the machine is shared; the best run is the least disturbed):

- the naive baseline: a bare ``csv.reader`` pass over the same file, in the same run;
- read_price_file (decode, sniff, profile, validate), its rows/s and ratio to the baseline;
- Matcher build and match of every row;
- end to end rows/s and ratio to the baseline (goal: >= 50,000 rows/s and within 4x);
- read time of a ``--xlsx-rows`` row workbook (goal: under 5 s).
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from costrecon_daemon.vendors.matching import CatalogKey, Matcher
from costrecon_daemon.vendors.readers import VendorRow, read_price_file

MANUFACTURERS = (
    "HP Inc.",
    "Dell Technologies",
    "Lenovo",
    "Cisco Systems",
    "Microsoft",
    "Logitech",
    "APC",
)
WORDS = ("Pro", "Ultra", "Wireless", "Notebook", "Monitor", "Switch", "Access", "Point", "License",
         "Backup", "Keyboard", "Dock")  # fmt: skip


def make_files(
    directory: Path, rows: int, items: int, seed: int = 7
) -> tuple[Path, list[CatalogKey]]:
    rnd = random.Random(seed)
    keys: list[CatalogKey] = []
    for i in range(items):
        mfr = MANUFACTURERS[i % len(MANUFACTURERS)]
        kind = i % 10
        keys.append(
            CatalogKey(
                item_id=i + 1,
                identifier=f"ITEM-{i:06d}" if kind != 9 else f"IDX{i:07d}",
                name=f"{mfr} {rnd.choice(WORDS)} {rnd.choice(WORDS)} {i}",
                vendor_sku=f"V{i:07d}" if kind < 7 else None,
                mpn=f"MP-{i:06d}#ABA" if kind in (7, 8) else None,
                manufacturer=mfr,
                term="P1M" if i % 20 == 0 else None,
            )
        )
    path = directory / "distributor-prices.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["SKU", "MPN", "Description", "Manufacturer", "Unit Cost", "Currency", "Term"]
        )
        for r in range(rows):
            i = r % (items * 2)  # about half the rows name a catalogue item
            kind = i % 10
            sku = f"V{i:07d}" if kind != 9 else f"IDX{i:07d}"
            mpn = f"MP{i:06d}" if kind in (7, 8) else f"X{r:07d}"
            cents = rnd.randint(99, 350_000)
            amount = f"{cents / 100:,.2f}" if r % 20 == 0 else f"{cents // 100}.{cents % 100:02d}"
            term = "Monthly" if i % 20 == 0 else ""
            if r >= items * 2:  # repeat passes over the SKU space use another term to stay unique
                sku = f"{sku}-{r // (items * 2)}"
            writer.writerow(
                [
                    sku,
                    mpn,
                    f"{MANUFACTURERS[i % 7]} {WORDS[i % 11]} {i}",
                    MANUFACTURERS[i % 7],
                    amount,
                    "USD",
                    term,
                ]
            )
    return path, keys


def make_xlsx(directory: Path, rows: int, seed: int = 7) -> Path:
    import openpyxl

    rnd = random.Random(seed)
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Prices")
    sheet.append(["SKU", "MPN", "Product Name", "Manufacturer", "Cost", "Currency", "List Price"])
    for r in range(rows):
        cost = rnd.randint(99, 350_000) / 100  # openpyxl stores numbers as floats: the real case
        sheet.append(
            [f"V{r:07d}", f"MP-{r:06d}", f"Widget {r}", "Acme", cost, "USD", round(cost * 1.3, 2)]
        )
    path = directory / "prices.xlsx"
    workbook.save(path)
    return path


def baseline(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh))


def commit_hook() -> tuple[Callable[[Sequence[VendorRow]], None], bool]:
    """The DB commit step, if ``costrecon_daemon.intake`` offers a benchmarkable import function
    (``commit_rows`` or ``benchmark_commit``); otherwise a no-op and False."""
    try:
        from costrecon_daemon import intake  # type: ignore[attr-defined]
    except ImportError:
        return (lambda rows: None), False
    for name in ("commit_rows", "benchmark_commit"):
        fn = getattr(intake, name, None)
        if callable(fn):
            return fn, True
    return (lambda rows: None), False


def best(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--xlsx-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    commit_rows, has_commit = commit_hook()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path, keys = make_files(directory, args.rows, args.items)
        size_mb = path.stat().st_size / 1e6
        t_base, _ = best(args.repeat, lambda: baseline(path))
        t_read, result = best(
            args.repeat, lambda: read_price_file(path, vendor="Bench Distribution")
        )
        rows = result.rows  # type: ignore[attr-defined]
        assert not result.errors, result.errors[:3]  # type: ignore[attr-defined]
        t_build, matcher = best(args.repeat, lambda: Matcher(keys))
        t_match, matches = best(args.repeat, lambda: matcher.match_all(rows))  # type: ignore[attr-defined]
        t_commit, _ = best(args.repeat, lambda: commit_rows(rows))
        matched = sum(1 for m in matches if m.item_id is not None)  # type: ignore[union-attr]
        by_method: dict[str, int] = {}
        for m in matches:  # type: ignore[union-attr]
            by_method[m.method or "none"] = by_method.get(m.method or "none", 0) + 1

        total = t_read + t_build + t_match + t_commit
        n = len(rows)
        print(f"file: {n:,} rows, {size_mb:.1f} MB generic CSV; catalogue {len(keys):,} keys")
        print(f"baseline  csv.reader pass       {t_base:7.3f} s  {n / t_base:10,.0f} rows/s")
        print(
            f"read      parse + validate      {t_read:7.3f} s  {n / t_read:10,.0f} rows/s  {t_read / t_base:4.1f}x baseline"
        )
        print(f"match     build Matcher         {t_build:7.3f} s")
        print(
            f"match     {n:,} rows            {t_match:7.3f} s  {n / t_match:10,.0f} rows/s  matched {matched:,} {by_method}"
        )
        if has_commit:
            print(f"commit    intake                {t_commit:7.3f} s")
        else:
            print(
                "commit    NOT INCLUDED: costrecon_daemon.intake offers no benchmarkable commit function yet"
            )
        print(
            f"end to end                      {total:7.3f} s  {n / total:10,.0f} rows/s  {total / t_base:4.1f}x baseline"
            f"  (goal >= 50,000 rows/s, <= 4x)"
        )

        if args.xlsx_rows:
            xlsx = make_xlsx(directory, args.xlsx_rows)
            t_xlsx, xresult = best(min(args.repeat, 2), lambda: read_price_file(xlsx))
            print(
                f"xlsx      {len(xresult.rows):,} rows read           {t_xlsx:7.3f} s  "  # type: ignore[attr-defined]
                f"{len(xresult.rows) / t_xlsx:10,.0f} rows/s  (goal < 5 s)"
            )  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
