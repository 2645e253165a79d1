"""Deterministic, PSA-neutral MSP data for every simulator (DESIGN.md §3 "Simulators are
first-class").

One seeded :class:`random.Random` drives everything, so ``generate("demo", seed=7)`` is the same
data on every machine. The records are PSA-neutral; each simulator maps them onto its own API shape
(ConnectWise catalog items/agreements/additions, Autotask Services/Contracts/ContractServices,
Syncro products/schedules/lines).

What an MSP tenant looks like, and what the data set therefore contains:

- Microsoft NCE subscriptions in monthly and annual terms as *separate* catalogue items
  (``M365-BP-M`` / ``M365-BP-A``) with the NCE ``ProductId:SkuId`` as manufacturer part number;
- backup, EDR, email security, RMM/PSA seats, DNS filtering, support plans, hardware-as-a-service,
  each with a distributor SKU (Pax8 / Ingram Micro / TD SYNNEX / direct styles);
- some inactive catalogue items, some cancelled and expired contracts, some cancelled lines, and
  lines whose unit cost was negotiated away from the catalogue cost;
- one-off lines on non-recurring items (Autotask maps them to ContractCharges), lines that start
  next billing period (``starts_next_period``), and, in data sets of ten contracts or more, a few
  contracts billed in CAD (ConnectWise agreement currency, Autotask customer-currency prices).
  These are added by a second random stream, so every other record is what it was before.

``large`` (50,000 items, 8,000 contracts, 150,000 lines) builds in a couple of seconds: no per-row
string formatting beyond what the record needs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = [
    "Dataset",
    "SimContract",
    "SimItem",
    "SimLine",
    "SIZES",
    "generate",
    "generate_custom",
]


@dataclass(slots=True)
class SimItem:
    id: int
    identifier: str
    name: str
    description: str
    cost: Decimal
    price: Decimal
    currency: str
    active: bool
    vendor_name: str
    vendor_sku: str | None
    manufacturer: str | None
    mpn: str | None
    recurring: bool
    category: str


@dataclass(slots=True)
class SimContract:
    id: int
    name: str
    company: str
    status: str  # "Active" | "Cancelled" | "Expired"
    currency: str = "USD"


@dataclass(slots=True)
class SimLine:
    id: int
    contract_id: int
    item_id: int
    quantity: Decimal
    unit_cost: Decimal
    unit_price: Decimal
    cancelled: bool
    description: str
    starts_next_period: bool = False  # future-dated: billed from the first of next month


@dataclass(slots=True)
class Dataset:
    items: list[SimItem] = field(default_factory=list)
    contracts: list[SimContract] = field(default_factory=list)
    lines: list[SimLine] = field(default_factory=list)

    def item(self, item_id: int) -> SimItem:
        return self._items_by_id()[item_id]

    def _items_by_id(self) -> dict[int, SimItem]:
        return {it.id: it for it in self.items}


# (items, contracts, lines)
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (20, 5, 40),
    "demo": (320, 60, 900),
    "large": (50_000, 8_000, 150_000),
}

CENT = Decimal("0.01")

# ---- the realistic core catalogue -------------------------------------------------------------
# (identifier stem, name, category, manufacturer, NCE ProductId:SkuId or MPN, monthly cost, terms)
# terms: "MA" = monthly and annual variants (NCE), "M" = monthly only, "O" = one-off / hardware.
_MICROSOFT = [
    ("M365-BB", "Microsoft 365 Business Basic", "CFQ7TTC0LH18:0001", "6.00"),
    ("M365-BS", "Microsoft 365 Business Standard", "CFQ7TTC0LDPB:0001", "12.50"),
    ("M365-BP", "Microsoft 365 Business Premium", "CFQ7TTC0LCHC:0002", "22.00"),
    ("O365-E1", "Office 365 E1", "CFQ7TTC0LF8R:0001", "10.00"),
    ("O365-E3", "Office 365 E3", "CFQ7TTC0LF8Q:0001", "23.00"),
    ("M365-E3", "Microsoft 365 E3", "CFQ7TTC0LFLX:0001", "36.00"),
    ("M365-E5", "Microsoft 365 E5", "CFQ7TTC0LFLZ:0002", "57.00"),
    ("EXO-P1", "Exchange Online (Plan 1)", "CFQ7TTC0LH16:0001", "4.00"),
    ("EXO-P2", "Exchange Online (Plan 2)", "CFQ7TTC0LH1P:0001", "8.00"),
    ("DEF-BUS", "Microsoft Defender for Business", "CFQ7TTC0LCJX:0001", "3.00"),
    ("DEF-O365-P1", "Microsoft Defender for Office 365 (Plan 1)", "CFQ7TTC0LHXM:0001", "2.00"),
    ("ENTRA-P1", "Microsoft Entra ID P1", "CFQ7TTC0LH8R:0001", "6.00"),
    ("INTUNE-P1", "Microsoft Intune Plan 1", "CFQ7TTC0LCHR:0001", "8.00"),
    ("TEAMS-ESS", "Microsoft Teams Essentials", "CFQ7TTC0RM8K:0001", "4.00"),
    ("M365-APPS-B", "Microsoft 365 Apps for business", "CFQ7TTC0LH1G:0001", "8.25"),
    ("VISIO-P2", "Visio Plan 2", "CFQ7TTC0HD33:0001", "15.00"),
    ("PROJ-P3", "Project Plan 3", "CFQ7TTC0HDN1:0002", "30.00"),
    ("PBI-PRO", "Power BI Pro", "CFQ7TTC0L3PB:0001", "10.00"),
]

# (stem, name, category, manufacturer, distributor, monthly cost, recurring)
_SERVICES = [
    (
        "DATTO-SAAS-M365",
        "Datto SaaS Protection for M365 (per user)",
        "Backup",
        "Datto",
        "Direct",
        "2.40",
        True,
    ),
    (
        "DATTO-SIRIS-2TB",
        "Datto SIRIS 2TB appliance + cloud",
        "Backup",
        "Datto",
        "Direct",
        "185.00",
        True,
    ),
    (
        "DATTO-EB-SVR",
        "Datto Endpoint Backup for Servers",
        "Backup",
        "Datto",
        "Direct",
        "38.00",
        True,
    ),
    (
        "ACR-CPC-WKS",
        "Acronis Cyber Protect Cloud - Workstation",
        "Backup",
        "Acronis",
        "Pax8",
        "3.10",
        True,
    ),
    (
        "ACR-CPC-SVR",
        "Acronis Cyber Protect Cloud - Server",
        "Backup",
        "Acronis",
        "Pax8",
        "17.50",
        True,
    ),
    (
        "ACR-CPC-M365",
        "Acronis Cyber Protect Cloud - M365 seat",
        "Backup",
        "Acronis",
        "Pax8",
        "0.95",
        True,
    ),
    (
        "VEEAM-VBM365",
        "Veeam Backup for Microsoft 365 (per user)",
        "Backup",
        "Veeam",
        "TD SYNNEX",
        "1.65",
        True,
    ),
    ("VEEAM-VDC-VM", "Veeam Data Cloud for VMs", "Backup", "Veeam", "TD SYNNEX", "9.80", True),
    ("S1-CORE", "SentinelOne Singularity Core", "EDR", "SentinelOne", "Pax8", "2.80", True),
    ("S1-CTRL", "SentinelOne Singularity Control", "EDR", "SentinelOne", "Pax8", "3.60", True),
    ("S1-CMPL", "SentinelOne Singularity Complete", "EDR", "SentinelOne", "Pax8", "4.75", True),
    ("HUNT-EDR", "Huntress Managed EDR", "EDR", "Huntress", "Direct", "3.50", True),
    ("HUNT-ITDR", "Huntress Managed ITDR (M365)", "EDR", "Huntress", "Direct", "2.25", True),
    (
        "HUNT-SAT",
        "Huntress Managed Security Awareness Training",
        "Security awareness",
        "Huntress",
        "Direct",
        "1.50",
        True,
    ),
    ("CS-FALCON-GO", "CrowdStrike Falcon Go", "EDR", "CrowdStrike", "Ingram Micro", "4.99", True),
    ("CS-FALCON-PRO", "CrowdStrike Falcon Pro", "EDR", "CrowdStrike", "Ingram Micro", "7.99", True),
    (
        "CS-FALCON-ENT",
        "CrowdStrike Falcon Enterprise",
        "EDR",
        "CrowdStrike",
        "Ingram Micro",
        "15.99",
        True,
    ),
    (
        "PPT-ESS-BUS",
        "Proofpoint Essentials Business",
        "Email security",
        "Proofpoint",
        "Pax8",
        "2.10",
        True,
    ),
    (
        "PPT-ESS-ADV",
        "Proofpoint Essentials Advanced",
        "Email security",
        "Proofpoint",
        "Pax8",
        "3.25",
        True,
    ),
    (
        "PPT-ESS-PRO",
        "Proofpoint Essentials Professional",
        "Email security",
        "Proofpoint",
        "Pax8",
        "4.20",
        True,
    ),
    (
        "MIME-EMS-SEC",
        "Mimecast Email Security, Cloud Gateway",
        "Email security",
        "Mimecast",
        "TD SYNNEX",
        "3.40",
        True,
    ),
    (
        "MIME-EMS-ARC",
        "Mimecast Email Archive (per mailbox)",
        "Email security",
        "Mimecast",
        "TD SYNNEX",
        "2.60",
        True,
    ),
    ("NINJA-RMM", "NinjaOne RMM (per endpoint)", "RMM", "NinjaOne", "Direct", "3.00", True),
    ("CWA-AGENT", "ConnectWise Automate agent", "RMM", "ConnectWise", "Direct", "2.20", True),
    ("NABLE-NCENT", "N-able N-central device", "RMM", "N-able", "Direct", "2.65", True),
    ("CWM-SEAT", "ConnectWise PSA seat", "PSA", "ConnectWise", "Direct", "54.00", True),
    ("ITG-SEAT", "IT Glue Enterprise seat", "Documentation", "Kaseya", "Direct", "39.00", True),
    ("DNSF-PRO", "DNSFilter Pro (per user)", "DNS filtering", "DNSFilter", "Pax8", "1.15", True),
    (
        "UMB-DNS-ESS",
        "Cisco Umbrella DNS Essentials",
        "DNS filtering",
        "Cisco",
        "Ingram Micro",
        "2.30",
        True,
    ),
    (
        "KEEPER-BUS",
        "Keeper Business (per user)",
        "Password management",
        "Keeper",
        "Pax8",
        "3.00",
        True,
    ),
    ("DUO-ESS", "Cisco Duo Essentials", "MFA", "Cisco", "Ingram Micro", "3.00", True),
    (
        "KNOWBE4-GOLD",
        "KnowBe4 Security Awareness Training Gold",
        "Security awareness",
        "KnowBe4",
        "TD SYNNEX",
        "1.90",
        True,
    ),
    (
        "AUV-ACCESS",
        "Auvik network management (per device)",
        "Networking",
        "Auvik",
        "Direct",
        "8.50",
        True,
    ),
    (
        "MERAKI-MX68-LIC",
        "Cisco Meraki MX68 Advanced Security licence (1 yr)",
        "Networking",
        "Cisco",
        "Ingram Micro",
        "27.50",
        True,
    ),
    (
        "SUP-BRONZE",
        "Managed Services - Bronze (per user)",
        "Support plan",
        None,
        "Internal",
        "18.00",
        True,
    ),
    (
        "SUP-SILVER",
        "Managed Services - Silver (per user)",
        "Support plan",
        None,
        "Internal",
        "32.00",
        True,
    ),
    (
        "SUP-GOLD",
        "Managed Services - Gold (per user)",
        "Support plan",
        None,
        "Internal",
        "48.00",
        True,
    ),
    ("SUP-SVR", "Managed Server (per server)", "Support plan", None, "Internal", "65.00", True),
    (
        "SUP-AFTERHRS",
        "After-hours support block (per month)",
        "Support plan",
        None,
        "Internal",
        "150.00",
        True,
    ),
    (
        "HAAS-LAT5440",
        "Dell Latitude 5440 - HaaS 36 mo",
        "Hardware as a service",
        "Dell",
        "TD SYNNEX",
        "34.00",
        True,
    ),
    (
        "HAAS-LAT7450",
        "Dell Latitude 7450 - HaaS 36 mo",
        "Hardware as a service",
        "Dell",
        "TD SYNNEX",
        "46.50",
        True,
    ),
    (
        "HAAS-EB840G10",
        "HP EliteBook 840 G10 - HaaS 36 mo",
        "Hardware as a service",
        "HP",
        "Ingram Micro",
        "41.00",
        True,
    ),
    (
        "HAAS-FG60F",
        "Fortinet FortiGate 60F - HaaS 36 mo",
        "Hardware as a service",
        "Fortinet",
        "Ingram Micro",
        "39.00",
        True,
    ),
    (
        "HAAS-MR44",
        "Cisco Meraki MR44 access point - HaaS",
        "Hardware as a service",
        "Cisco",
        "Ingram Micro",
        "22.00",
        True,
    ),
    (
        "HW-OPTIPLEX7010",
        "Dell OptiPlex 7010 SFF i5/16GB/512GB",
        "Hardware",
        "Dell",
        "TD SYNNEX",
        "742.00",
        False,
    ),
    (
        "HW-U2724D",
        "Dell UltraSharp 27 monitor U2724D",
        "Hardware",
        "Dell",
        "TD SYNNEX",
        "289.00",
        False,
    ),
    (
        "HW-YUBIKEY5NFC",
        "Yubico YubiKey 5 NFC",
        "Hardware",
        "Yubico",
        "Ingram Micro",
        "41.50",
        False,
    ),
]

_MFR_SKU_PREFIX = {
    "Datto": "DTO",
    "Acronis": "ACR",
    "Veeam": "VEE",
    "SentinelOne": "SNO",
    "Huntress": "HNT",
    "CrowdStrike": "CRW",
    "Proofpoint": "PPT",
    "Mimecast": "MIM",
    "NinjaOne": "NJA",
    "ConnectWise": "CWS",
    "Kaseya": "KAS",
    "N-able": "NAB",
    "DNSFilter": "DNF",
    "Cisco": "CSC",
    "Keeper": "KPR",
    "KnowBe4": "KB4",
    "Auvik": "AUV",
    "Dell": "DEL",
    "HP": "HPI",
    "Fortinet": "FTN",
    "Yubico": "YUB",
}

# Filler families for large catalogues: hardware, accessories and per-customer bundles.
_FILLER = [
    (
        "HW-DELL",
        "Dell",
        "Hardware",
        "TD SYNNEX",
        ["Latitude", "OptiPlex", "Precision", "PowerEdge", "Pro Dock"],
    ),
    (
        "HW-HP",
        "HP",
        "Hardware",
        "Ingram Micro",
        ["EliteBook", "ProBook", "EliteDesk", "Z2 Mini", "USB-C Dock"],
    ),
    (
        "HW-LEN",
        "Lenovo",
        "Hardware",
        "Ingram Micro",
        ["ThinkPad T", "ThinkPad X1", "ThinkCentre M", "ThinkVision"],
    ),
    (
        "NET-UBNT",
        "Ubiquiti",
        "Networking",
        "TD SYNNEX",
        ["UniFi Switch", "UniFi AP", "Dream Machine"],
    ),
    ("NET-FTN", "Fortinet", "Networking", "Ingram Micro", ["FortiGate", "FortiSwitch", "FortiAP"]),
    (
        "LIC-ADOBE",
        "Adobe",
        "Software",
        "Pax8",
        ["Acrobat Pro", "Creative Cloud", "Acrobat Standard"],
    ),
    (
        "SVC-PROJ",
        None,
        "Professional services",
        "Internal",
        ["Onboarding", "Migration", "Site survey"],
    ),
]

_COMPANY_A = [
    "Acme",
    "Alder",
    "Birch",
    "Cedar",
    "Harbor",
    "Summit",
    "Pioneer",
    "Granite",
    "Riverside",
    "Lakeside",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Woodgrove",
    "Bluebird",
    "Keystone",
    "Meridian",
    "Beacon",
    "Orchard",
    "Cascade",
    "Redwood",
    "Maple",
    "Prairie",
    "Atlas",
    "Sterling",
    "Copper",
    "Evergreen",
    "Highland",
    "Frontier",
    "Liberty",
    "Coastal",
    "Canyon",
    "Willow",
    "Horizon",
    "Silverline",
]
_COMPANY_B = [
    "Dental",
    "Legal",
    "Accounting",
    "Logistics",
    "Engineering",
    "Realty",
    "Veterinary",
    "Manufacturing",
    "Builders",
    "Insurance",
    "Pediatrics",
    "Architects",
    "Family-Practice",
    "Freight",
    "Credit-Union",
    "Brewing",
    "Marine",
    "Foods",
    "Clinic",
    "Partners",
]
_COMPANY_C = ["LLC", "Inc.", "Group", "PC", "Co.", "LLP", "Ltd."]
_AGREEMENT_KINDS = [
    "Managed Services",
    "Microsoft 365",
    "Security Stack",
    "Backup & DR",
    "HaaS",
    "Co-managed IT",
]


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT)


def _core_items(rng: random.Random) -> list[tuple]:
    """The hand-written catalogue as tuples (identifier, name, category, manufacturer, vendor,
    vendor_sku, mpn, cost, recurring), Microsoft and the rest interleaved so that even ``tiny``
    holds a realistic mix."""
    ms: list[tuple] = []
    rest: list[tuple] = []
    for n, (stem, name, nce, monthly) in enumerate(_MICROSOFT):
        cost = Decimal(monthly)
        # NCE: an annual commitment is ~5 % cheaper per month than month-to-month (and is a
        # different SKU at the distributor), so MSPs keep it as a different catalogue item.
        for term, label, factor, sku_suffix in (
            ("M", "Monthly", Decimal("1.20"), "C100"),
            ("A", "Annual", Decimal("1.00"), "C112"),
        ):
            ms.append(
                (
                    f"{stem}-{term}",
                    f"{name} (NCE {label})",
                    "Microsoft 365",
                    "Microsoft",
                    "Pax8",
                    f"MST-NCE-{100 + n:03d}-{sku_suffix}",
                    nce,
                    _money(cost * factor),
                    True,
                )
            )
    for stem, name, category, mfr, vendor, monthly, recurring in _SERVICES:
        prefix = _MFR_SKU_PREFIX.get(mfr or "", "INT")
        if vendor == "Pax8":
            vsku = f"{prefix}-{stem.split('-', 1)[-1]}-C100"
        elif vendor == "Ingram Micro":
            vsku = f"IM-{rng.randrange(1_000_000, 9_999_999)}"
        elif vendor == "TD SYNNEX":
            vsku = f"SYX{rng.randrange(10_000_000, 99_999_999)}"
        elif vendor == "Direct":
            vsku = f"{prefix}{rng.randrange(1000, 9999)}"
        else:
            vsku = None
        mpn = f"{prefix}-{rng.randrange(100000, 999999)}" if mfr else None
        rest.append((stem, name, category, mfr, vendor, vsku, mpn, Decimal(monthly), recurring))
    out: list[tuple] = []
    for i in range(max(len(ms), len(rest))):
        out.extend(x[i] for x in (ms, rest) if i < len(x))
    return out


def _filler_item(rng: random.Random, n: int) -> tuple:
    stem, mfr, category, vendor, models = _FILLER[n % len(_FILLER)]
    model = models[(n // len(_FILLER)) % len(models)]
    number = 100 + n
    name = f"{mfr + ' ' if mfr else ''}{model} {number}"
    if category == "Professional services":
        cost = Decimal(rng.randrange(9500, 250000)) / 100
        return (
            f"{stem}-{number}",
            f"{model} - fixed fee #{number}",
            category,
            None,
            vendor,
            None,
            None,
            cost,
            False,
        )
    assert mfr is not None  # only the professional-services family has none; it returned above
    cost = Decimal(rng.randrange(1500, 320000)) / 100
    if vendor == "Ingram Micro":
        vsku = f"IM-{rng.randrange(1_000_000, 9_999_999)}"
    elif vendor == "TD SYNNEX":
        vsku = f"SYX{rng.randrange(10_000_000, 99_999_999)}"
    else:
        vsku = f"{mfr[:3].upper()}-{number}-C100"
    mpn = f"{mfr[:2].upper()}{rng.randrange(10000, 99999)}-{number}"
    recurring = category == "Software"
    return (f"{stem}-{number}", name, category, mfr, vendor, vsku, mpn, cost, recurring)


def _make_items(rng: random.Random, count: int, currency: str) -> list[SimItem]:
    core = _core_items(rng)
    items: list[SimItem] = []
    for i in range(count):
        if i < len(core):
            ident, name, category, mfr, vendor, vsku, mpn, cost, recurring = core[i]
        else:
            ident, name, category, mfr, vendor, vsku, mpn, cost, recurring = _filler_item(
                rng, i - len(core)
            )
        markup = Decimal(120 + rng.randrange(0, 80)) / 100  # 20–100 % markup
        active = rng.random() >= 0.06
        items.append(
            SimItem(
                id=i + 1,
                identifier=ident[:60],
                name=name[:60],
                description=f"{name} - billed {'monthly' if recurring else 'once'}"[:6000],
                cost=cost,
                price=_money(cost * markup),
                currency=currency,
                active=active,
                vendor_name=vendor,
                vendor_sku=vsku,
                manufacturer=mfr,
                mpn=mpn,
                recurring=recurring,
                category=category,
            )
        )
    return items


def _make_contracts(rng: random.Random, count: int, currency: str) -> list[SimContract]:
    contracts: list[SimContract] = []
    for i in range(count):
        company = (
            f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B).replace('-', ' ')} "
            f"{rng.choice(_COMPANY_C)}"
        )
        roll = rng.random()
        status = "Cancelled" if roll < 0.07 else "Expired" if roll < 0.10 else "Active"
        kind = rng.choice(_AGREEMENT_KINDS)
        contracts.append(
            SimContract(
                id=i + 1,
                name=f"{company.split(' ')[0]} - {kind}"[:100],
                company=company,
                status=status,
                currency=currency,
            )
        )
    # Even a tiny data set shows the cases the product must handle: one cancelled agreement.
    if len(contracts) >= 4 and not any(c.status == "Cancelled" for c in contracts):
        contracts[-1].status = "Cancelled"
    return contracts


def _make_lines(
    rng: random.Random, count: int, items: list[SimItem], contracts: list[SimContract]
) -> list[SimLine]:
    if not items or not contracts or count <= 0:
        return []
    # Contract lines mostly use recurring items, and the popular ones (the first few hundred,
    # i.e. the hand-written M365/security stack) far more than the long tail.
    recurring = [it for it in items if it.recurring] or items
    head = recurring[: min(len(recurring), 120)]
    tail = recurring[len(head) :]
    lines: list[SimLine] = []
    n_contracts = len(contracts)
    per_contract, extra = divmod(count, n_contracts)
    next_id = 1
    rnd = rng.random
    for ci, contract in enumerate(contracts):
        k = per_contract + (1 if ci < extra else 0)
        used: set[int] = set()
        for _ in range(k):
            pool = tail if (tail and rnd() < 0.25) else head
            item = pool[int(rnd() * len(pool))]
            if item.id in used and len(used) < len(pool):
                item = pool[int(rnd() * len(pool))]
            used.add(item.id)
            qty = Decimal(1 + int(rnd() * rnd() * 80))
            unit_cost = item.cost
            if rnd() < 0.08:  # negotiated: a distributor promo or a legacy price
                unit_cost = _money(item.cost * Decimal(85 + int(rnd() * 25)) / 100)
            cancelled = contract.status != "Active" or rnd() < 0.05
            lines.append(
                SimLine(
                    id=next_id,
                    contract_id=contract.id,
                    item_id=item.id,
                    quantity=qty,
                    unit_cost=unit_cost,
                    unit_price=item.price,
                    cancelled=cancelled,
                    description=item.name,
                )
            )
            next_id += 1
    return lines


def generate_custom(
    items: int, contracts: int, lines: int, seed: int = 7, currency: str = "USD"
) -> Dataset:
    """A data set of exactly the given sizes (lines are spread evenly over contracts)."""
    rng = random.Random(seed)
    item_list = _make_items(rng, items, currency)
    contract_list = _make_contracts(rng, contracts, currency)
    line_list = _make_lines(rng, lines, item_list, contract_list)
    _add_fidelity_cases(random.Random(seed * 7919 + 1), item_list, contract_list, line_list)
    return Dataset(items=item_list, contracts=contract_list, lines=line_list)


def _add_fidelity_cases(
    rng: random.Random, items: list[SimItem], contracts: list[SimContract], lines: list[SimLine]
) -> None:
    """The cases real tenants have that the first data sets lacked (psa-fidelity.md): one-off
    lines, lines starting next period, and contracts in another currency. Its own random stream
    keeps the rest of the data set unchanged."""
    one_off = [it for it in items if not it.recurring and it.active]
    for n, ln in enumerate(lines):
        if one_off and n % 25 == 12:
            item = one_off[int(rng.random() * len(one_off))]
            ln.item_id = item.id
            ln.quantity = Decimal(1 + int(rng.random() * 3))
            ln.unit_cost, ln.unit_price = item.cost, item.price
            ln.description = item.name
        elif n % 40 == 21 and not ln.cancelled:
            ln.starts_next_period = True
    if len(contracts) >= 10:
        for n, contract in enumerate(contracts):
            if n % 15 == 7:
                contract.currency = "CAD"


def generate(size: str = "demo", seed: int = 7) -> Dataset:
    """``tiny`` (tests), ``demo`` (``costrecon demo``) or ``large`` (benchmarks)."""
    try:
        items, contracts, lines = SIZES[size]
    except KeyError:
        raise ValueError(
            f"unknown data set size {size!r}; expected one of {', '.join(SIZES)}"
        ) from None
    return generate_custom(items, contracts, lines, seed=seed)
