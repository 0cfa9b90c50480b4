"""Which API keys the lab may mint: scopes of named deployments, never `admin` nor `*`.

A key the lab mints is handed to the page, where any JavaScript of the Jupyter origin can read
it. So the page gets no more than its actions need: calling (`predict:NAME`) or managing
(`manage:NAME`) deployments it names, and scraping `metrics`. The server's owner mints `admin`
keys and wildcards in a terminal (`nstarx keys create`), where the admin token already is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstarx_jupyter.errors import ForbiddenError
from nstarx_jupyter.security.keys import ADMIN, ALL, parse_scopes

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["LAB_SCOPES", "lab_scopes"]

LAB_SCOPES = "predict:NAME, manage:NAME or metrics"
"""The scopes a key minted through the lab may carry, as the refusals name them."""


def lab_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """`scopes` checked (`parse_scopes`) and allowed for a key the lab mints.

    Raises:
        InvalidInputError: a malformed scope.
        ForbiddenError: `admin`, or a scope on every deployment (`predict:*`, `manage:*`).
    """
    parsed = parse_scopes(scopes)
    for scope in parsed:
        if scope == ADMIN or scope.endswith(f":{ALL}"):
            raise ForbiddenError(
                f"scopes: the lab does not mint '{scope}' keys, which the page would hold; "
                f"name deployments ({LAB_SCOPES}), or run `nstarx keys create` in a terminal"
            )
    return parsed
