"""Distributor APIs as vendor-cost sources: Pax8 and Ingram Micro (issue 16).

Each source turns a list of :class:`ProductRef` (the products mapped to catalogue items) into one
:class:`PullResult` (price rows with provenance, plus what could not be priced and why), ready to
be imported all-or-nothing like a price file. Settings live in :mod:`.settings`; requests go
through the shared connector transport (psa/http.py) with the classifier in :mod:`.errors`.
"""

from costrecon_daemon.vendors.sources.errors import (
    VendorAuthError,
    VendorRateLimited,
    VendorResponseError,
    VendorSourceError,
    VendorUnavailable,
)
from costrecon_daemon.vendors.sources.prices import (
    NotPriced,
    ProductRef,
    PullResult,
    RateBand,
    VendorPrice,
)

__all__ = [
    "NotPriced",
    "ProductRef",
    "PullResult",
    "RateBand",
    "VendorAuthError",
    "VendorPrice",
    "VendorRateLimited",
    "VendorResponseError",
    "VendorSourceError",
    "VendorUnavailable",
]
