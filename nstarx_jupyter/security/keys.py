"""API keys: minted once, stored as SHA-256 digests, scoped to deployments, revocable.

A key reads `nsx_<id>_<secret>`: the 8-hex id finds the record (and is what listings show), the
32-byte secret makes it unguessable. Keys are random, not passwords, so one SHA-256 is the right
digest (as for GitHub's and Stripe's tokens): a slow KDF would only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = ["ALL", "ApiKey", "Guard", "KeyStore", "key_prefix"]

ALL = "*"
"""The scope of a key valid for every deployment."""
_PREFIX = "nsx_"


def key_prefix(value: str) -> str:
    """`nsx_<id>` of a key, a prefix or an id: what listings show and revocation takes."""
    return _PREFIX + value.removeprefix(_PREFIX).split("_", 1)[0]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the server keeps about a key: never the key itself."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created: float
    digest: str
    revoked: float | None = None

    @property
    def prefix(self) -> str:
        """The key's first characters (`nsx_<id>`): enough to recognise it, useless to call."""
        return f"{_PREFIX}{self.id}"

    def covers(self, deployment: str) -> bool:
        """Whether the key may call `deployment`."""
        return ALL in self.scopes or deployment in self.scopes

    def public(self) -> dict[str, Any]:
        """The key's record for listings: no digest, no secret."""
        doc = {"id": self.id, "prefix": self.prefix, "name": self.name,
               "deployments": list(self.scopes), "created": self.created}  # fmt: skip
        if self.revoked is not None:
            doc["revoked"] = self.revoked
        return doc


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Keys in a JSON file (`path`, written atomically, owner-only) or in memory (`path=None`)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        if path is not None and path.exists():
            try:
                docs = json.loads(path.read_text())
                for doc in docs:
                    key = ApiKey(**{**doc, "scopes": tuple(doc["scopes"])})
                    self._keys[key.id] = key
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise InvalidInputError(f"{path}: not a key file ({exc})") from exc

    def create(
        self, name: str = "", deployments: Iterable[str] | None = None
    ) -> tuple[ApiKey, str]:
        """Mint a key for `deployments` (None: all). Returns the record and the key, shown once."""
        scopes = (ALL,) if deployments is None else tuple(dict.fromkeys(deployments))
        if not scopes:
            raise InvalidInputError("deployments: name at least one, or none for all")
        with self._lock:
            key_id = secrets.token_hex(4)
            while key_id in self._keys:
                key_id = secrets.token_hex(4)
            secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            record = ApiKey(key_id, name, scopes, time.time(), _digest(secret))
            self._keys[key_id] = record
            self._save()
        return record, secret

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id or prefix; it stays listed, marked revoked, and stops working."""
        key_id = key_id.removeprefix(_PREFIX)
        with self._lock:
            record = self._keys.get(key_id)
            if record is None:
                raise NotFoundError(f"no API key '{_PREFIX}{key_id}'")
            if record.revoked is None:
                record = replace(record, revoked=time.time())
                self._keys[key_id] = record
                self._save()
        return record

    def records(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        return sorted(self._keys.values(), key=lambda key: key.created)

    def verify(self, key: str) -> ApiKey:
        """The live record behind `key`.

        Raises:
            UnauthenticatedError: unknown, malformed or revoked key.
        """
        key_id = key[len(_PREFIX) : len(_PREFIX) + 8] if key.startswith(_PREFIX) else ""
        record = self._keys.get(key_id)
        if record is None or not hmac.compare_digest(record.digest, _digest(key)):
            raise UnauthenticatedError("the API key is not valid")
        if record.revoked is not None:
            raise UnauthenticatedError(f"the API key {record.prefix} was revoked")
        return record

    def _save(self) -> None:
        if self.path is not None:
            docs = [{**asdict(key), "scopes": list(key.scopes)} for key in self.records()]
            atomic_write(self.path, json.dumps(docs, indent=1), mode=0o600)


class Guard:
    """Who may call which deployment: protected names need a key covering them (or the admin)."""

    def __init__(self, keys: KeyStore, admin_token: str | None = None) -> None:
        self.keys = keys
        self.admin_token = admin_token
        self.protected: set[str] = set()
        """Deployments that need a key; the rest are open (KServe's default)."""

    def is_admin(self, token: str) -> bool:
        """Whether `token` is the server's admin token (compared in constant time)."""
        admin = self.admin_token
        return admin is not None and hmac.compare_digest(token.encode(), admin.encode())

    def check(self, deployment: str, authorization: str | None, *, admin: bool = False) -> None:
        """Let the call through or raise; `admin` calls (load, unload) take the admin token only.

        Raises:
            UnauthenticatedError: a protected deployment and no valid key.
            ForbiddenError: a valid key for other deployments, or an API key on an admin call.
        """
        if deployment not in self.protected:
            return
        if not authorization:
            raise UnauthenticatedError(
                f"'{deployment}' needs an API key: send 'Authorization: Bearer KEY'"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("send the API key as 'Authorization: Bearer KEY'")
        if self.is_admin(token):
            return
        if not self.keys.verify(token).covers(deployment):
            raise ForbiddenError(f"this API key does not cover '{deployment}'")
        if admin:
            raise ForbiddenError("loading and unloading a protected model take the admin token")
