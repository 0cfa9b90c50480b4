"""Keys, access rules and the audit log from a notebook, through the local server's control API.

`create_key`, `list_keys`, `revoke_key`, `rotate_key`, `set_access`, `access_rules` and
`audit_log` (a DataFrame). The same operations are `nstarx keys|access|audit` in a terminal and
`/nstarx/v1/keys|access|audit` over HTTP.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.security import key_prefix
from nstarx_jupyter.security.audit_log import to_dataframe
from nstarx_jupyter.security.home import parse_duration

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "access_rules",
    "audit_log",
    "create_key",
    "list_keys",
    "revoke_key",
    "rotate_key",
    "set_access",
]


def _seconds(value: float | str | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return parse_duration(value)


def create_key(
    name: str = "",
    scopes: list[str] | None = None,
    *,
    expires_in: float | str | None = None,
    rate_limit: float | None = None,
    burst: int | None = None,
    backend: LocalBackend | None = None,
) -> dict[str, Any]:
    """Mint an API key; `["key"]` holds it, shown this once (the server keeps a digest).

    The control API's `KeyCreated` as a dict: its fields, the unset ones left out.

    `scopes`: `predict:NAME`, `manage:NAME`, `metrics`, `admin` (NAME may be `*`; default
    `predict:*`). `expires_in`: seconds or `"30d"`; `rate_limit`: requests per second, with
    `burst` at once.
    """
    made = (backend or LocalBackend()).create_key(
        name, scopes, expires_in_s=_seconds(expires_in), rate_limit=rate_limit, burst=burst
    )
    return made.model_dump()


def list_keys(backend: LocalBackend | None = None) -> pd.DataFrame:
    """Every key by prefix (never the key itself): scopes, state, expiry, rate limit."""
    import pandas as pd

    rows = (backend or LocalBackend()).list_keys()
    frame = pd.DataFrame([row.model_dump() for row in rows])
    for column in ("created", "expires", "revoked"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def revoke_key(key: str, backend: LocalBackend | None = None) -> dict[str, Any]:
    """Revoke a key by id, prefix or the key itself: calls with it get 401 within a second."""
    return (backend or LocalBackend()).revoke_key(key_prefix(key)).model_dump()


def rotate_key(
    key: str, grace: float | str = 0, backend: LocalBackend | None = None
) -> dict[str, Any]:
    """Replace a key by a new one (same name, scopes and limits); `["key"]` is the new key.

    The old key keeps working for `grace` (seconds or `"10m"`), long enough to switch callers.
    """
    grace_s = _seconds(grace) or 0.0
    return (backend or LocalBackend()).rotate_key(key_prefix(key), grace_s).model_dump()


def set_access(
    model: str,
    *,
    read: list[str] | None = None,
    deploy: list[str] | None = None,
    call: list[str] | None = None,
    backend: LocalBackend | None = None,
) -> dict[str, list[str]]:
    """Who may read, deploy and call registry model `model`: key names, key ids or `*`.

    A list replaces the one before; an empty list allows nobody but the admin; a permission
    never set stays open to every key whose scopes cover the deployment.
    """
    lists = {"read": read, "deploy": deploy, "call": call}
    rule = (backend or LocalBackend()).set_access(
        model, **{p: who for p, who in lists.items() if who is not None}
    )
    return rule.model_dump()


def access_rules(backend: LocalBackend | None = None) -> dict[str, dict[str, list[str]]]:
    """Every registry model's access rules."""
    rules = (backend or LocalBackend()).access()
    return {model: rule.model_dump() for model, rule in rules.items()}


def audit_log(
    since: float | str | None = "1h",
    *,
    key: str | None = None,
    model: str | None = None,
    action: str | None = None,
    status: int | str | None = None,
    limit: int = 10_000,
    backend: LocalBackend | None = None,
) -> pd.DataFrame:
    """The audit log as a DataFrame: who (key id, name), what, model, version, status, latency.

    `since`: how far back (seconds or `"10m"`, `"1d"`; None for everything); `status` an
    int or a class such as `"4xx"`.
    """
    window = _seconds(since)
    rows = (backend or LocalBackend()).audit(
        since=time.time() - window if window is not None else None, key=key, model=model,
        action=action, status=status, limit=limit,
    )  # fmt: skip
    return to_dataframe([row.model_dump() for row in rows])
