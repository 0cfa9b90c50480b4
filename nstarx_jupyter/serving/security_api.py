"""The control API's security routes: API keys, registry model access rules, the audit log.

`/nstarx/v1/keys` (create, list), `/keys/{key}` (revoke), `/keys/{key}/rotate`,
`/nstarx/v1/access[/{model}]` and `/nstarx/v1/audit`: all need the admin token or a key with
the `admin` scope.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.control import (
    AccessRule,
    AccessRules,
    AuditRows,
    KeyCreated,
    KeyList,
    KeyRotated,
)
from nstarx_jupyter.security import key_prefix
from nstarx_jupyter.security.audit_log import read_audit
from nstarx_jupyter.serving.control_http import (
    PREFIX,
    control_endpoint,
    json_body,
    model_response,
    query_number,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.control_http import Handler
    from nstarx_jupyter.serving.dataplane import DataPlane

__all__ = ["SecurityApi"]

_AUDIT_QUERY = ("since", "until", "key", "action", "model", "status", "limit")


class SecurityApi:
    """Keys, access rules and the audit log over the server's guard."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.guard = dataplane.guard

    def routes(self) -> list[Route]:
        """The security routes (admin only)."""

        def admin(handler: Handler, audit_as: str) -> Callable[[Request], Awaitable[Response]]:
            return control_endpoint(self.dataplane, handler, "admin", audit_as)

        return [
            Route(f"{PREFIX}/keys", admin(self._keys, "keys"), methods=["GET", "POST"]),
            Route(f"{PREFIX}/keys/{{key}}", admin(self._revoke, "keys.revoke"),
                  methods=["DELETE"]),
            Route(f"{PREFIX}/keys/{{key}}/rotate", admin(self._rotate, "keys.rotate"),
                  methods=["POST"]),
            Route(f"{PREFIX}/access", admin(self._access_list, "access"), methods=["GET"]),
            Route(f"{PREFIX}/access/{{model}}", admin(self._access, "access"),
                  methods=["GET", "PUT"]),
            Route(f"{PREFIX}/audit", admin(self._audit, "audit"), methods=["GET"]),
        ]  # fmt: skip

    def create_key(
        self,
        name: str = "",
        scopes: list[str] | None = None,
        *,
        expires: float | None = None,
        rate_limit: float | None = None,
        burst: int | None = None,
        deployment: str | None = None,
    ) -> KeyCreated:
        """Mint a key (default scope `predict:*`); the answer holds the key, once.

        `deployment`: the deployment whose deploy mints it (deleting it revokes the key).
        """
        record, secret = self.guard.keys.create(
            name, scopes or ["predict:*"], expires=expires, rate_limit=rate_limit, burst=burst,
            deployment=deployment,
        )  # fmt: skip
        return KeyCreated(**record.public().model_dump(), key=secret)

    async def _keys(self, request: Request, principal: Principal) -> Response:
        if request.method == "GET":
            return model_response(KeyList([key.public() for key in self.guard.keys.records()]))
        doc = await json_body(request)
        unknown = set(doc) - {"name", "scopes", "deployments", "expires", "expires_in_s",
                              "rate_limit", "burst", "deployment"}  # fmt: skip
        if unknown:
            raise InvalidInputError(f"keys: unknown field '{sorted(unknown)[0]}'")
        scopes = doc.get("scopes", doc.get("deployments"))
        if scopes is not None and (not isinstance(scopes, list) or not scopes):
            raise InvalidInputError("scopes: a non-empty list such as ['predict:iris']")
        expires = _optional_number(doc, "expires")
        expires_in_s = _optional_number(doc, "expires_in_s", positive=True)
        if expires_in_s is not None:  # null, like a missing field, sets no expiry
            expires = time.time() + expires_in_s
        burst = _optional_number(doc, "burst", positive=True)
        minted_for = doc.get("deployment")
        if minted_for is not None and not isinstance(minted_for, str):
            raise InvalidInputError("deployment: the name of the deployment the key is minted for")
        if burst is not None and burst != int(burst):
            raise InvalidInputError("burst: a whole number of requests")
        made = self.create_key(
            str(doc.get("name", "")), scopes, expires=expires,
            rate_limit=_optional_number(doc, "rate_limit", positive=True),
            burst=int(burst) if burst is not None else None, deployment=minted_for,
        )  # fmt: skip
        return model_response(made, 201)

    async def _revoke(self, request: Request, principal: Principal) -> Response:
        return model_response(self.guard.keys.revoke(request.path_params["key"]).public())

    async def _rotate(self, request: Request, principal: Principal) -> Response:
        doc = await json_body(request, empty_ok=True)
        grace = _optional_number(doc, "grace_s") or 0.0
        record, secret = self.guard.keys.rotate(request.path_params["key"], grace_s=grace)
        old = key_prefix(request.path_params["key"])
        rotated = KeyRotated(**record.public().model_dump(), key=secret, replaces=old)
        return model_response(rotated, 201)

    async def _access_list(self, request: Request, principal: Principal) -> Response:
        return model_response(AccessRules.model_validate(self.guard.access.rules()))

    async def _access(self, request: Request, principal: Principal) -> Response:
        model = request.path_params["model"]
        if request.method == "GET":
            rule = self.guard.access.rules().get(model, {})
        else:
            rule = self.guard.access.set(model, **await json_body(request))
        return model_response(AccessRule.model_validate(rule))

    async def _audit(self, request: Request, principal: Principal) -> Response:
        query = request.query_params
        unknown = set(query) - set(_AUDIT_QUERY)
        if unknown:
            raise InvalidInputError(f"audit: unknown parameter '{sorted(unknown)[0]}'")
        audit = self.dataplane.audit.log
        if audit is None:
            raise InvalidInputError("this server keeps no audit log")
        filters: dict[str, Any] = {k: query[k] for k in ("key", "action", "model") if k in query}
        for key in ("since", "until"):
            if key in query:
                filters[key] = query_number(query, key)
        if "status" in query:
            raw = query["status"]
            filters["status"] = int(raw) if raw.isdigit() else raw
        limit = int(query_number(query, "limit", "1000"))
        if not 1 <= limit <= 100_000:
            raise InvalidInputError("limit: between 1 and 100000 records")
        self.dataplane.audit.flush()  # the calls answered so far, not only those written out
        return model_response(AuditRows.model_validate(read_audit(audit.folder, limit=limit,
                                                                  **filters)))  # fmt: skip


def _optional_number(doc: dict[str, Any], key: str, *, positive: bool = False) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{key}: a number")
    if positive and value <= 0:
        raise InvalidInputError(f"{key}: above 0")
    return float(value)
