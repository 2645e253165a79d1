"""Writers for realistic vendor price files, one per format in vendors.md §4.

Tests and ``costrecon demo`` import this to produce files that match a given catalogue: each writer
takes a list of :class:`PriceLine` and a directory and returns the path it wrote. ``PriceLine.cost``
is always the *monthly* cost a technician should end up seeing; writers for formats that price the
whole term (Microsoft CSP) multiply it back out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

__all__ = [
    "PriceLine",
    "SAMPLE_HARDWARE",
    "SAMPLE_CLOUD",
    "write_generic_csv",
    "write_eu_csv",
    "write_cp1252_csv",
    "write_utf16_tab",
    "write_xlsx",
    "write_ingram_price_txt",
    "write_ingram_stdprice",
    "write_ms_csp",
    "write_synnex",
    "write_dh_itemlist",
    "write_ingram_price_zip",
    "write_truncated_xlsx",
    "write_empty",
    "write_binary_csv",
    "write_bad_costs_csv",
]


@dataclass(frozen=True)
class PriceLine:
    # the distributor's SKU (Ingram part number, D&H item number, Microsoft ProductId:SkuId)
    sku: str
    mpn: str | None
    description: str
    cost: Decimal  # monthly cost per unit for cloud terms
    manufacturer: str | None = None
    currency: str = "USD"
    term: str | None = None  # "P1M", "P1Y" or None
    billing: str | None = None  # "Monthly", "Annual" or None
    list_price: Decimal | None = None


D = Decimal

SAMPLE_HARDWARE: tuple[PriceLine, ...] = (
    PriceLine(
        "8RT112",
        "818D2UT#ABA",
        "HP EliteBook 840 G10 i7 16GB 512GB W11P",
        D("1189.00"),
        "HP Inc.",
        list_price=D("1549.00"),
    ),
    PriceLine(
        "5QW091",
        "P2423D",
        "Dell 24 Monitor P2423D QHD",
        D("219.99"),
        "Dell Technologies",
        list_price=D("289.99"),
    ),
    PriceLine(
        "0071234",
        "U6-PRO",
        "Ubiquiti UniFi 6 Pro Access Point",
        D("149.00"),
        "Ubiquiti Inc.",
        list_price=D("159.00"),
    ),
    PriceLine(
        "1LK774",
        "MR36-HW",
        "Cisco Meraki MR36 Wi-Fi 6 Access Point",
        D("412.50"),
        "Cisco Systems",
        list_price=D("599.00"),
    ),
    PriceLine(
        "2GH018",
        "920-009295",
        "Logitech MX Keys Wireless Keyboard",
        D("74.34"),
        "Logitech",
        list_price=D("99.99"),
    ),
    PriceLine(
        "9ZX443",
        "BR1500MS2",
        "APC Back-UPS Pro 1500VA Sinewave",
        D("231.10"),
        "Schneider Electric",
        list_price=D("289.00"),
    ),
    PriceLine(
        "3PL201",
        "5060408461426",
        "Yubico YubiKey 5 NFC",
        D("40.50"),
        "Yubico",
        list_price=D("50.00"),
    ),
    PriceLine(
        "7TR556",
        "SL-M2020W/XAA",
        "Samsung Xpress M2020W Mono Laser",
        D("0.99"),
        "HP Inc.",
        list_price=D("129.00"),
    ),
)

SAMPLE_CLOUD: tuple[PriceLine, ...] = (
    PriceLine(
        "CFQ7TTC0LH18:0001",
        "CFQ7TTC0LH18:0001",
        "Microsoft 365 Business Basic",
        D("7.20"),
        "Microsoft Corporation",
        term="P1M",
        billing="Monthly",
    ),
    PriceLine(
        "CFQ7TTC0LH18:0001",
        "CFQ7TTC0LH18:0001",
        "Microsoft 365 Business Basic",
        D("6.00"),
        "Microsoft Corporation",
        term="P1Y",
        billing="Annual",
    ),
    PriceLine(
        "CFQ7TTC0LDPB:0001",
        "CFQ7TTC0LDPB:0001",
        "Microsoft 365 Business Standard",
        D("15.00"),
        "Microsoft Corporation",
        term="P1M",
        billing="Monthly",
    ),
    PriceLine(
        "CFQ7TTC0LDPB:0001",
        "CFQ7TTC0LDPB:0001",
        "Microsoft 365 Business Standard",
        D("12.50"),
        "Microsoft Corporation",
        term="P1Y",
        billing="Annual",
    ),
    PriceLine(
        "CFQ7TTC0LCHC:0002",
        "CFQ7TTC0LCHC:0002",
        "Microsoft 365 Business Premium",
        D("26.40"),
        "Microsoft Corporation",
        term="P1M",
        billing="Monthly",
    ),
    PriceLine(
        "CFQ7TTC0LCHC:0002",
        "CFQ7TTC0LCHC:0002",
        "Microsoft 365 Business Premium",
        D("22.00"),
        "Microsoft Corporation",
        term="P1Y",
        billing="Annual",
    ),
    PriceLine(
        "CFQ7TTC0LH16:0001",
        "CFQ7TTC0LH16:0001",
        "Exchange Online (Plan 1)",
        D("4.80"),
        "Microsoft Corporation",
        term="P1M",
        billing="Monthly",
    ),
)


def _money(value: Decimal, places: int = 2) -> str:
    return f"{value:.{places}f}"


def _thousands(value: Decimal) -> str:
    return f"{value:,.2f}"


def _write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _csv_text(
    rows: Iterable[Sequence[object]], delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL
) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    writer.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------------------ generic layouts


def write_generic_csv(
    directory: Path,
    lines: Sequence[PriceLine],
    name: str = "acme-distribution-prices.csv",
    *,
    vendor: str | None = None,
) -> Path:
    """An English Excel "CSV UTF-8" export: header synonyms, ``1,189.00`` thousands, a trailing
    empty column and a blank line at the end, as Excel leaves them."""
    header = ["Part Number", "Manufacturer Part Number", "Description", "Manufacturer", "Unit Cost",
              "Currency", "Term", "MSRP", ""]  # fmt: skip
    if vendor:
        header.insert(0, "Vendor")
    rows: list[list[object]] = [header]
    for ln in lines:
        row = [ln.sku, ln.mpn or "", ln.description, ln.manufacturer or "", _thousands(ln.cost),
               ln.currency, {"P1M": "Monthly", "P1Y": "Annual"}.get(ln.term or "", ""),
               _money(ln.list_price) if ln.list_price is not None else "", ""]  # fmt: skip
        if vendor:
            row.insert(0, vendor)
        rows.append(row)
    return _write(directory / name, _csv_text(rows) + "\r\n", "utf-8")


def write_eu_csv(
    directory: Path, lines: Sequence[PriceLine], name: str = "preisliste-2026-11.csv"
) -> Path:
    """A German Excel save: UTF-8 with BOM, ``;`` separators, ``1.189,00`` amounts, German
    headers."""
    rows: list[list[object]] = [
        ["Artikelnummer", "Herstellernummer", "Bezeichnung", "Hersteller", "EK-Preis", "Währung"]
    ]
    for ln in lines:
        amount = _thousands(ln.cost).replace(",", "_").replace(".", ",").replace("_", ".")
        rows.append(
            [ln.sku, ln.mpn or "", ln.description, ln.manufacturer or "", amount, ln.currency]
        )
    return _write(directory / name, "\ufeff" + _csv_text(rows, ";"), "utf-8")


def write_cp1252_csv(
    directory: Path, lines: Sequence[PriceLine], name: str = "uk-eu-prices.csv"
) -> Path:
    """A plain Excel "CSV" save on Windows (cp1252): currency symbols inside the amounts, accented
    descriptions, no currency column."""
    symbols = {"EUR": "€", "GBP": "£", "USD": "$"}
    rows: list[list[object]] = [["Item Number", "Description", "Your Price"]]
    for ln in lines:
        rows.append([ln.sku, ln.description, f"{symbols[ln.currency]}{_thousands(ln.cost)}"])
    return _write(directory / name, _csv_text(rows), "cp1252")


def write_utf16_tab(
    directory: Path, lines: Sequence[PriceLine], name: str = "unicode-export.txt"
) -> Path:
    """Excel's "Unicode Text" save: UTF-16 LE with BOM, tab separated."""
    rows: list[list[object]] = [["Vendor SKU", "Name", "Buy Price", "Currency"]]
    for ln in lines:
        rows.append([ln.sku, ln.description, _money(ln.cost), ln.currency])
    return _write(directory / name, _csv_text(rows, "\t"), "utf-16")


def write_xlsx(
    directory: Path,
    lines: Sequence[PriceLine],
    name: str = "price-list.xlsx",
    *,
    formula_rows: Iterable[int] = (),
    title: str | None = "Acme Distribution — price list",
    sheet_title: str = "Prices",
) -> Path:
    """An xlsx with a title line above the header, numeric cost cells and text SKUs. Lines whose
    0-based position is in ``formula_rows`` get a formula instead of a cost."""
    import openpyxl

    formulas = set(formula_rows)
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_title)
    if title:
        sheet.append([title])
        sheet.append([])
    sheet.append(["SKU", "MPN", "Product Name", "Manufacturer", "Cost", "Currency", "List Price"])
    first_data_row = 4 if title else 2
    for i, ln in enumerate(lines):
        cost: object = f"=G{first_data_row + i}*0.8" if i in formulas else ln.cost
        sheet.append(
            [ln.sku, ln.mpn, ln.description, ln.manufacturer, cost, ln.currency, ln.list_price]
        )
    path = directory / name
    workbook.save(path)
    return path


# ----------------------------------------------------------------------------- distributor layouts


def write_ingram_price_txt(
    directory: Path,
    lines: Sequence[PriceLine],
    name: str = "PRICE.TXT",
    *,
    deleted: Sequence[PriceLine] = (),
) -> Path:
    """Ingram Micro US PRICE.TXT (vendors.md §4.1): headerless, every field quoted, 23 fields,
    part numbers space-padded to 12, prices zero-padded. ``deleted`` lines get action ``D``."""
    rows = []
    for action, ln in [("A", ln) for ln in lines] + [("D", ln) for ln in deleted]:
        desc1, _, desc2 = ln.description.upper().partition(" ")
        retail = ln.list_price if ln.list_price is not None else ln.cost
        rows.append(
            [
                action,
                ln.sku.ljust(12),
                "1234",
                (ln.manufacturer or "").upper(),
                desc1[:31],
                desc2[:35],
                f"{retail:010.2f}",
                ln.mpn or "",
                "004.50",
                "012345678905",
                "0012.00",
                "0008.00",
                "0002.00",
                "Y",
                f"{ln.cost:010.2f}",
                "",
                "Y",
                "",
                "",
                "",
                "0701",
                "",
                "",
            ]
        )
    return _write(directory / name, _csv_text(rows, quoting=csv.QUOTE_ALL), "ascii")


STDPRICE_HEADER = (
    "Ingram Part Number", "Ingram Part Description", "Customer Part Number", "Vendor Part Number",
    "EANUPC Code", "Plant", "Vendor Number", "Vendor Name", "Unit", "Category ID", "Customer Price",
    "Retail Price", "Availability Flag", "Available Quantity", "Material Long Description",
    "Substitute Material", "Manufacturer Vendor Number", "Price Status", "Material Status",
    "Discontinued / Obsoleted date","Customer Price with Tax","Retail Price with Tax","Tax Percent",
    "Discount in Percent", "Company code Currency", "Customer Currency Code",
    "Customer Price Change Flag", "Plant 01 Available Quantity",
)  # fmt: skip


def write_ingram_stdprice(
    directory: Path, lines: Sequence[PriceLine], name: str = "STDPRICE_FULL.TXT"
) -> Path:
    """Ingram Micro AU STDPRICE_FULL.TXT (vendors.md §4.2): header row, ex-tax and inc-GST
    prices."""
    rows: list[Sequence[object]] = [STDPRICE_HEADER]
    for ln in lines:
        with_tax = (ln.cost * D("1.1")).quantize(D("0.01"))
        retail = ln.list_price if ln.list_price is not None else ln.cost
        rows.append(
            [
                ln.sku,
                ln.description[:40],
                "",
                ln.mpn or "",
                "0012345678905",
                "AU01",
                "V1234",
                ln.manufacturer or "",
                "EA",
                "0701",
                _money(ln.cost),
                _money(retail),
                "Y",
                "14",
                ln.description,
                "",
                "M123",
                "A",
                "",
                "",
                _money(with_tax),
                _money((retail * D("1.1")).quantize(D("0.01"))),
                "10.00",
                "0.00",
                "AUD",
                ln.currency,
                "N",
                "14",
            ]
        )
    return _write(directory / name, _csv_text(rows), "utf-8")


MS_HEADER = (
    "ProductTitle",
    "ProductId",
    "SkuId",
    "SkuTitle",
    "Publisher",
    "SkuDescription",
    "UnitOfMeasure",
    "TermDuration",
    "BillingPlan",
    "Market",
    "Currency",
    "UnitPrice",
    "PricingTierRangeMin",
    "PricingTierRangeMax",
    "EffectiveStartDate",
    "EffectiveEndDate",
    "Tags",
    "ERP Price",
    "Segment",
)


def _ms_date(d: date) -> str:
    return f"{d.month}/{d.day}/{d.year} 0:00"


def write_ms_csp(
    directory: Path,
    lines: Sequence[PriceLine],
    name: str = "NCE_LicenseBasedPL_202611_US.csv",
    *,
    today: date,
    with_history: bool = True,
) -> Path:
    """Microsoft CSP new-commerce license-based price list (vendors.md §4.5). UnitPrice is for the
    whole term, so a P1Y line's monthly cost is written ×12. With ``with_history`` every line also
    gets last month's (expired) row at a lower price and next month's row at a higher one."""
    month_start = today.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    last_month = (month_start - timedelta(days=1)).replace(day=1)
    rows: list[Sequence[object]] = [MS_HEADER]
    for ln in lines:
        product_id, _, sku_id = ln.sku.partition(":")
        months = 12 if ln.term == "P1Y" else 1
        periods = [(month_start, next_month - timedelta(days=1), ln.cost)]
        if with_history:
            periods.insert(0, (last_month, month_start - timedelta(days=1), ln.cost - D("0.50")))
            periods.append((next_month, date(next_month.year + 1, 1, 1), ln.cost + D("1.00")))
        for start, end, monthly in periods:
            unit = monthly * months
            rows.append([
                ln.description, product_id, sku_id, ln.description, "Microsoft Corporation",
                f"{ln.description} for businesses", "", ln.term, ln.billing or "Monthly", "US",
                ln.currency, _money(unit), "0", "", _ms_date(start), _ms_date(end), "License",
                _money(unit * D("1.2")), "Commercial",
            ])  # fmt: skip
    return _write(directory / name, _csv_text(rows), "utf-8-sig")


SYNNEX_HEADER = (
    "Trading_Partner_Code", "Detail_Record_ID", "Manufacturer_Part", "SYNNEX_Internal_Use",
    "SYNNEX_SKU", "Status_Code", "Part_Description", "Manufacturer_Name", "Qty_on_Hand",
    "Contract_Price", "MSRP", "Unit_Cost", "UPC_Code", "UNSPSC_Code", "SKU_Created_Date",
    "Promotion_Flag", "Promotion_Comment", "Promotion_Expiration_Date", "Replacement_Sku",
    "Minimum_Order_Qty",
)  # fmt: skip


def write_synnex(
    directory: Path, lines: Sequence[PriceLine], name: str = "synnex_price_avail.txt"
) -> Path:
    """TD SYNNEX ``~`` file (vendors.md §4.3). Contract_Price carries a 5% promo that expires; the
    standing cost is Unit_Cost. Some rows carry extra trailing fields, as real files do."""
    rows: list[Sequence[object]] = [SYNNEX_HEADER]
    for i, ln in enumerate(lines):
        promo = (ln.cost * D("0.95")).quantize(D("0.01"))
        msrp = ln.list_price if ln.list_price is not None else ln.cost
        row = [
            "712345",
            "D",
            ln.mpn or "",
            f"MFR-{ln.mpn or ''}",
            ln.sku,
            "A",
            ln.description,
            ln.manufacturer or "",
            "25",
            _money(promo),
            _money(msrp),
            _money(ln.cost),
            "012345678905",
            "43211503",
            "20240115",
            "Y",
            "Holiday promo",
            "20261231",
            "",
            "1",
        ]
        if i % 3 == 0:
            row += ["", ""]
        rows.append(row)
    return _write(directory / name, _csv_text(rows, "~"), "cp1252")


def write_dh_itemlist(directory: Path, lines: Sequence[PriceLine], name: str = "ITEMLIST") -> Path:
    """D&H ITEMLIST (vendors.md §4.4): ``|``, headerless, 17 fields, cost zero-padded
    ``00010.00``."""
    rows = []
    for ln in lines:
        rows.append(
            [
                "I",
                "142",
                "N",
                "99/99/99",
                ln.sku,
                ln.mpn or "",
                "012345678905",
                "0701",
                (ln.manufacturer or "").upper(),
                f"{ln.cost:08.2f}",
                "0000.00",
                "000.00",
                "000.00",
                "UPS",
                "0003",
                ln.description[:30].upper(),
                ln.description,
            ]
        )
    return _write(directory / name, _csv_text(rows, "|", csv.QUOTE_NONE), "ascii")


# ----------------------------------------------------------------------------------- bad files


def write_truncated_xlsx(
    directory: Path, lines: Sequence[PriceLine], name: str = "cut-short.xlsx"
) -> Path:
    """An xlsx whose copy stopped half way (scp interrupted)."""
    full = write_xlsx(directory, lines, name=f".full-{name}")
    data = full.read_bytes()
    full.unlink()
    path = directory / name
    path.write_bytes(data[: len(data) // 2])
    return path


def write_empty(directory: Path, name: str = "empty.csv") -> Path:
    path = directory / name
    path.write_bytes(b"")
    return path


def write_binary_csv(directory: Path, name: str = "prices.csv") -> Path:
    """A file with a .csv name that is really something else (here: a PNG someone saved wrongly)."""
    path = directory / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    return path


def write_bad_costs_csv(
    directory: Path, lines: Sequence[PriceLine], name: str = "bad-costs.csv"
) -> Path:
    """A generic CSV whose 2nd line has a negative cost, 3rd a typo'd cost ``12,5x``, 4th no cost
    and 5th no SKU; the rest are good."""
    broken = list(lines)
    rows: list[list[object]] = [["SKU", "Description", "Cost", "Currency"]]
    for i, ln in enumerate(broken):
        cost = _money(ln.cost)
        sku = ln.sku
        if i == 1:
            cost = f"-{cost}"
        elif i == 2:
            cost = "12,5x"
        elif i == 3:
            cost = ""
        elif i == 4:
            sku = ""
        rows.append([sku, ln.description, cost, ln.currency])
    return _write(directory / name, _csv_text(rows), "utf-8")


def with_currency(lines: Iterable[PriceLine], currency: str) -> list[PriceLine]:
    """The same lines priced in another currency (for the cp1252 € / £ files)."""
    return [replace(ln, currency=currency) for ln in lines]


def write_ingram_price_zip(
    directory: Path, lines: Sequence[PriceLine], name: str = "PRICE.ZIP"
) -> Path:
    """Ingram's FTP download as it arrives: PRICE.TXT inside PRICE.ZIP."""
    import zipfile

    inner = write_ingram_price_txt(directory, lines, name=".PRICE.TXT.tmp")
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(inner, "PRICE.TXT")
    inner.unlink()
    return path


# ----------------------------------------------------------------------------- hostile files
# Issue 13 item 1: small files that inflate into memory bombs. Each is built with real
# compression (no forged sizes), the way an attacker or a broken exporter would make it.

_BOMB_ROW = b"ABC-123,Acme widget,12.50\n"


def write_zip_bomb_csv(directory: Path, name: str = "prices.zip", gib: int = 4) -> Path:
    """A zip of a few MB holding a ``gib`` GiB CSV (a header, then one row repeated)."""
    block = _BOMB_ROW * ((1 << 24) // len(_BOMB_ROW))
    count = -(-(gib << 30) // len(block))  # blocks, rounded up: at least `gib` GiB
    member = _Repeated(b"SKU,Description,Cost\n", block, count, b"")
    return _write_zip(directory / name, [("PRICES.CSV", member)])


@dataclass(frozen=True)
class _Repeated:
    """A member's content: ``head + block * count + tail``, never built in memory."""

    head: bytes
    block: bytes
    count: int
    tail: bytes

    @property
    def size(self) -> int:
        return len(self.head) + self.count * len(self.block) + len(self.tail)

    def crc(self) -> int:
        import zlib

        crc = _crc32_combine(
            zlib.crc32(self.head),
            _crc32_repeated(self.block, self.count),
            self.count * len(self.block),
        )
        return zlib.crc32(self.tail, crc)


def _write_zip(path: Path, members: list[tuple[str, bytes | _Repeated]]) -> Path:
    """A zip (zip64 records, deflate) written by hand, so that a member of gigabytes is real
    deflate with true sizes and CRC, yet built in a fraction of a second rather than by
    compressing gigabytes: its block is deflated once, ended with a full flush (which forgets
    the history, so those bytes stand alone and byte-aligned) and repeated, and the CRC of the
    repetition is combined arithmetically rather than computed over every byte."""
    import struct
    import zlib

    def deflated(data: bytes, final: bool = False) -> bytes:
        z = zlib.compressobj(1, zlib.DEFLATED, -15)
        return z.compress(data) + z.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    stamp = (0, (2025 - 1980) << 9 | 1 << 5 | 1)  # 00:00, 2025-01-01
    central = b""
    with open(path, "wb") as fh:
        for name, content in members:
            offset = fh.tell()
            if isinstance(content, _Repeated):
                first = deflated(content.head + content.block)
                again = deflated(content.block)
                last = deflated(content.tail, final=True)
                parts, size, crc = (first, again, last), content.size, content.crc()
                comp = len(first) + (content.count - 1) * len(again) + len(last)
            else:
                data = deflated(content, final=True)
                parts, size, crc, comp = (data,), len(content), zlib.crc32(content), len(data)
            fname = name.encode()
            z64 = struct.pack("<HHQQ", 1, 16, size, comp)
            fixed = (45, 0, 8, *stamp, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(fname), len(z64))
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fixed) + fname + z64)
            if isinstance(content, _Repeated):
                fh.write(parts[0])
                for _ in range(content.count - 1):
                    fh.write(parts[1])
                fh.write(parts[2])
            else:
                fh.write(parts[0])
            central += struct.pack("<IH", 0x02014B50, 45) + struct.pack("<HHHHHIIIHH", *fixed)
            central += struct.pack("<HHHII", 0, 0, 0, 0, offset) + fname + z64
        cd_start = fh.tell()
        fh.write(central)
        end64 = fh.tell()
        n = len(members)
        fh.write(
            struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_start)
        )
        fh.write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_start, 0))
    return path


def _gf2_times(matrix: list[int], vector: int) -> int:
    out, n = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[n]
        vector >>= 1
        n += 1
    return out


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc(A), crc(B) and len(B) (zlib's crc32_combine, which Python's
    zlib module does not expose): crc(A) is advanced over len(B) zero bytes by squaring the
    one-zero-bit operator, then crc(B) is added."""
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = [_gf2_times(odd, v) for v in odd]  # two zero bits
    odd = [_gf2_times(even, v) for v in even]  # four zero bits
    while len2:
        even = [_gf2_times(odd, v) for v in odd]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, v) for v in even]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
    return crc1 ^ crc2


def _crc32_repeated(data: bytes, count: int) -> int:
    """The CRC-32 of ``data * count`` by doubling, without building it."""
    import zlib

    result, result_len = 0, 0  # crc32(b"") == 0
    power, power_len = zlib.crc32(data), len(data)
    while count:
        if count & 1:
            result = _crc32_combine(result, power, power_len)
            result_len += power_len
        count >>= 1
        if count:
            power = _crc32_combine(power, power, power_len)
            power_len *= 2
    return result


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/></Types>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
    'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships"><sheets><sheet name="Prices" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/></Relationships>'
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
    'spreadsheetml/2006/main"><sheetData>'
    '<row r="1"><c r="A1" t="inlineStr"><is><t>SKU</t></is></c>'
    '<c r="B1" t="inlineStr"><is><t>Cost</t></is></c></row>'
)
_SHEET_TAIL = "</sheetData></worksheet>"


def _write_hand_xlsx(path: Path, sheet_rows: str, shared: bytes | None = None) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", _SHEET_HEAD + sheet_rows + _SHEET_TAIL)
        if shared is not None:
            archive.writestr("xl/sharedStrings.xml", shared)
    return path


def write_xlsx_far_cell(directory: Path, name: str = "far-cell.xlsx") -> Path:
    """A few KB: one data row whose second cell sits at column ZZZZZZ."""
    row = (
        '<row r="2"><c r="A2" t="inlineStr"><is><t>ABC-1</t></is></c>'
        '<c r="ZZZZZZ2"><v>12.5</v></c></row>'
    )
    return _write_hand_xlsx(directory / name, row)


def write_xlsx_far_row(directory: Path, name: str = "far-row.xlsx") -> Path:
    """A few KB: one data row numbered two billion."""
    row = (
        '<row r="2000000000"><c r="A2000000000" t="inlineStr"><is><t>ABC-1</t></is></c>'
        '<c r="B2000000000"><v>12.5</v></c></row>'
    )
    return _write_hand_xlsx(directory / name, row)


def write_xlsx_shared_strings_bomb(
    directory: Path, name: str = "strings.xlsx", mib: int = 600
) -> Path:
    """A few MB whose sharedStrings.xml expands to ``mib`` MiB of one repeated string."""
    one = b"<si><t>" + b"x" * 4000 + b"</t></si>"
    per_block = (1 << 24) // len(one)  # 16 MiB blocks, deflated once (see _write_zip)
    shared = _Repeated(
        b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
        b'spreadsheetml/2006/main">',
        one * per_block,
        (mib << 20) // len(one) // per_block,
        b"</sst>",
    )
    row = '<row r="2"><c r="A2" t="s"><v>0</v></c><c r="B2"><v>12.5</v></c></row>'
    return _write_zip(
        directory / name,
        [
            ("[Content_Types].xml", _CONTENT_TYPES.encode()),
            ("xl/workbook.xml", _WORKBOOK.encode()),
            ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS.encode()),
            ("xl/worksheets/sheet1.xml", (_SHEET_HEAD + row + _SHEET_TAIL).encode()),
            ("xl/sharedStrings.xml", shared),
        ],
    )
