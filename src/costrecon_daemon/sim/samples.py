"""Sample vendor price files for `costrecon demo`, written to match a simulated tenant.

Three files, as a technician's week brings them: a distributor list with increases and decreases
(matched by vendor SKU), a file whose SKUs the catalogue does not know (they wait in Mappings with
suggestions), and a malformed file that lands in failed/ with its error report.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from .dataset import Dataset


def write_samples(dataset: Dataset, directory: Path, *, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    pax8 = [it for it in dataset.items if it.active and it.vendor_name == "Pax8" and it.vendor_sku]
    rng.shuffle(pax8)
    changed = sorted(pax8[:40], key=lambda it: it.identifier)
    rows = []
    for n, it in enumerate(changed):
        if n % 5 == 4:
            new = it.cost  # unchanged rows are normal in a distributor list
        elif n % 3 == 0:
            new = (it.cost * Decimal("0.95")).quantize(Decimal("0.01"))
        else:
            new = (it.cost * Decimal(1 + rng.choice([3, 5, 8, 12]) / 100)).quantize(Decimal("0.01"))
        rows.append(
            [
                it.vendor_sku,
                it.mpn or "",
                it.name,
                f"{new}",
                "USD",
                "Monthly" if it.identifier.endswith("-M") else "",
            ]
        )
    paths = [
        _write(
            directory / "pax8-price-update.csv",
            ["SKU", "MPN", "Description", "Unit Cost", "Currency", "Term"],
            rows,
        )
    ]

    unknown = sorted(
        rng.sample([it for it in dataset.items if it.active], 8), key=lambda it: it.identifier
    )
    rows = [
        [
            f"IM-{rng.randint(100000, 999999)}",
            f"{it.name} (Ingram)",
            f"{(it.cost * Decimal('1.02')).quantize(Decimal('0.01'))}",
            "USD",
        ]
        for it in unknown
    ]
    paths.append(
        _write(
            directory / "ingram-new-skus.csv",
            ["Part Number", "Description", "Unit Cost", "Currency"],
            rows,
        )
    )

    bad = [
        ["ACME-100", "Widget service", "12.50", "USD"],
        ["ACME-101", "Widget plus", "-3.00", "USD"],
        ["ACME-102", "Widget pro", "twelve", "USD"],
        ["", "No SKU here", "4.00", "USD"],
    ]
    paths.append(
        _write(
            directory / "acme-prices-BROKEN.csv", ["SKU", "Description", "Cost", "Currency"], bad
        )
    )
    return paths


def _write(path: Path, header: list[str], rows: Sequence[Sequence[str | None]]) -> Path:
    """Copy-then-rename, as the README tells people to drop files, so nothing half-written is
    seen."""
    tmp = path.with_name("." + path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
    return path
