"""The errors a distributor pull can end with, and how the shared connector transport
(psa/http.py) reads a distributor's answers: 429 and 5xx are retried there (one retry and limit
code path for every remote API, issue 11); every other answer, 4xx included, goes back to the
source, which knows what a 401, a 404 or a 207 means for its API.

Each error is also the matching :mod:`psa.base` error, so the transport can raise it when its
retries run out; ``str()`` is one sentence saying what happened and what to do.
"""

from __future__ import annotations

from costrecon_daemon.psa.base import PSAError, PSARateLimited, PSAUnavailable
from costrecon_daemon.psa.http import Call, Classifier, HttpResponse, Retry, parse_retry_after

__all__ = [
    "VendorAuthError",
    "VendorClassifier",
    "VendorRateLimited",
    "VendorResponseError",
    "VendorSourceError",
    "VendorUnavailable",
    "as_vendor_error",
]


class VendorSourceError(PSAError):
    """A pull that cannot go on."""


class VendorAuthError(VendorSourceError):
    """The distributor refused the credentials (the fix is in its portal or the config)."""


class VendorUnavailable(VendorSourceError, PSAUnavailable):
    pass


class VendorRateLimited(VendorSourceError, PSARateLimited):
    pass


class VendorResponseError(VendorSourceError):
    """An answer the source cannot read (a shape the reference does not describe)."""


class VendorClassifier(Classifier):
    """429 (with ``Retry-After`` when sent) and 5xx are retried; anything else is the source's."""

    def __init__(self, name: str) -> None:
        self.name = name

    def wait_hint(self, resp: HttpResponse) -> float | None:
        return parse_retry_after(resp.headers.get("Retry-After"))

    def rate_limited(self, resp: HttpResponse, call: Call) -> Retry:
        wait = self.wait_hint(resp)
        return Retry(
            VendorRateLimited(
                f"{self.name} kept answering 'too many requests'; wait a few minutes and pull "
                "again.",
                retry_after=wait,
            ),
            wait=wait,
            pause_all=True,
            maybe_applied=False,
        )

    def server_error(self, resp: HttpResponse, call: Call) -> Retry:
        return Retry(
            VendorUnavailable(
                f"{self.name} answered server error {resp.status_code} to {call.method} "
                f"{call.path} again and again; try the pull again later.",
                status=resp.status_code,
            )
        )

    def error(self, resp: HttpResponse, call: Call) -> None:
        return None


def as_vendor_error(exc: PSAError) -> VendorSourceError:
    """The transport's own failures (nothing reached, a bad URL) as a pull error."""
    if isinstance(exc, VendorSourceError):
        return exc
    # The transport's sentence already names the call and what to check.
    return VendorUnavailable(exc.message, status=exc.status, detail=exc.detail)
