"""API keys: minted once, stored as SHA-256 digests, scoped, expiring, rate-limited, rotatable.

A key reads `nsx_<id>_<secret>`: the 8-hex id finds the record (and is what listings show), the
32-byte secret makes it unguessable. Keys are random, not passwords, so one SHA-256 is the right
digest (as for GitHub's and Stripe's tokens): a slow KDF would only slow every request.

Scopes (what a key may do):

- `predict:NAME`: call deployment NAME (infer, predict, feedback) and read its metadata;
- `manage:NAME`: deploy, change, roll back and delete NAME, read its metrics and logs (and call
  it, as its owner tests it);
- `metrics`: scrape `/metrics`;
- `admin`: everything, keys and the audit log included.

NAME may be `*` (every deployment). The key file is shared by every server and command of one
`$NSTARX_HOME`: writers take a file lock and re-read before they change it, readers reload it
when it changed (checked at most every `RELOAD_S`), so a key revoked by `nstarx keys revoke`
stops working on a running server within a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError, NotFoundError, UnauthenticatedError
from nstarx_jupyter.protocol.control import KeyRecord
from nstarx_jupyter.security.shared import RELOAD_S, SharedFile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from nstarx_jupyter.protocol.control import KeyState

__all__ = [
    "ADMIN",
    "ALL",
    "KEY_PREFIX",
    "RELOAD_S",
    "ApiKey",
    "KeyStore",
    "key_prefix",
    "parse_scopes",
]

ALL = "*"
"""In a scope, every deployment: `predict:*`."""
ADMIN = "admin"
KEY_PREFIX = "nsx_"
"""How every key starts (`nsx_<id>_<secret>`)."""
_ACTIONS = ("predict", "manage")
_NAME = re.compile(r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")


def key_prefix(value: str) -> str:
    """`nsx_<id>` of a key, a prefix or an id: what listings show and revocation takes."""
    return KEY_PREFIX + value.removeprefix(KEY_PREFIX).split("_", 1)[0]


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Check scopes (`predict:NAME`, `manage:NAME`, `metrics`, `admin`); a bare NAME is `predict`.

    Raises:
        InvalidInputError: an unknown action or a malformed deployment name.
    """
    parsed: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str):
            raise InvalidInputError(f"scopes: '{scope}' is not a string")
        if scope in (ADMIN, "metrics"):
            parsed.append(scope)
            continue
        action, sep, name = scope.partition(":")
        if not sep:  # `iris`: the form keys had before scopes, and the short one
            action, name = "predict", scope
        if action not in _ACTIONS:
            raise InvalidInputError(
                f"scopes: '{scope}' is not predict:NAME, manage:NAME, metrics or admin"
            )
        if not _NAME.match(name):
            raise InvalidInputError(f"scopes: '{name}' is not a deployment name or '*'")
        parsed.append(f"{action}:{name}")
    if not parsed:
        raise InvalidInputError("scopes: name at least one (predict:NAME, manage:NAME, admin)")
    return tuple(dict.fromkeys(parsed))


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the server keeps about a key: never the key itself."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created: float
    digest: str
    revoked: float | None = None
    """When the key stops (stopped) working; later than now during a rotation's grace period."""
    expires: float | None = None
    rate_limit: float | None = None
    """Requests per second the key may make on average (a token bucket); None: no limit."""
    burst: int | None = None
    """Requests the key may make at once before the rate applies; default the rate (at least 1)."""
    rotated_to: str | None = None
    """The id of the key that replaced this one."""
    deployment: str | None = None
    """The deployment whose deploy minted the key (`deploy()`, the sidebar, `nstarx deploy`):
    deleting that deployment revokes it. None for keys made on purpose."""

    @property
    def prefix(self) -> str:
        """The key's first characters (`nsx_<id>`): enough to recognise it, useless to call."""
        return f"{KEY_PREFIX}{self.id}"

    def allows(self, action: str, deployment: str | None = None) -> bool:
        """Whether the key's scopes let it do `action` (predict, read, manage, metrics, admin)."""
        scopes = self.scopes
        if ADMIN in scopes:
            return True
        if action == "metrics":
            return "metrics" in scopes
        wanted: tuple[str, ...]
        if action in ("predict", "read"):
            wanted = ("predict", "manage")
        elif action == "manage":
            wanted = ("manage",)
        else:
            return False
        names = (ALL,) if deployment is None else (ALL, deployment)
        return any(f"{a}:{n}" in scopes for a in wanted for n in names)

    def state(self, now: float | None = None) -> KeyState:
        """`active`, `expired` or `revoked`."""
        now = time.time() if now is None else now
        if self.revoked is not None and self.revoked <= now:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"

    def public(self) -> KeyRecord:
        """The key's record for listings and the control API: no digest, no secret."""
        return KeyRecord(
            id=self.id, prefix=self.prefix, name=self.name, scopes=list(self.scopes),
            created=self.created, state=self.state(), expires=self.expires,
            rate_limit=self.rate_limit, burst=self.burst, revoked=self.revoked,
            rotated_to=self.rotated_to, deployment=self.deployment,
        )  # fmt: skip


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_limits(
    expires: float | None, rate_limit: float | None, burst: int | None, now: float
) -> None:
    if expires is not None and not expires > now:
        raise InvalidInputError("expires: a time in the future")
    if rate_limit is not None and not 0 < rate_limit <= 1e6:
        raise InvalidInputError("rate_limit: requests per second, above 0")
    if burst is not None and not 1 <= burst <= 1_000_000:
        raise InvalidInputError("burst: at least 1 request")


class KeyStore(SharedFile):
    """Keys in a JSON file shared across processes (`path`, owner-only) or in memory (`None`)."""

    what = "key file"

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        """Seconds since the epoch (tests pass their own, to expire keys at once)."""
        self._keys: dict[str, ApiKey] = {}
        self._checked_keys: dict[str, ApiKey] = {}
        """Keys already checked against their digest (cleared whenever the keys change)."""
        super().__init__(path)

    def _load(self, doc: Any) -> None:
        keys = {}
        for item in doc or ():
            item["scopes"] = parse_scopes(item["scopes"])
            fields = {k: v for k, v in item.items() if k in ApiKey.__dataclass_fields__}
            keys[fields["id"]] = ApiKey(**fields)
        self._keys = keys
        self._checked_keys.clear()

    def _dump(self) -> Any:
        return [{**asdict(key), "scopes": list(key.scopes)}
                for key in sorted(self._keys.values(), key=lambda k: k.created)]  # fmt: skip

    # -- reading -------------------------------------------------------------------------------

    def records(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        self.refresh()
        return sorted(self._keys.values(), key=lambda key: key.created)

    def get(self, key_id: str) -> ApiKey:
        """The record of a key by id, prefix or the key itself."""
        self.refresh()
        record = self._keys.get(key_prefix(key_id).removeprefix(KEY_PREFIX))
        if record is None:
            raise NotFoundError(f"no API key '{key_prefix(key_id)}'")
        return record

    def verify(self, key: str) -> ApiKey:
        """The live record behind `key`.

        Raises:
            UnauthenticatedError: unknown, malformed, expired or revoked key.
        """
        self.refresh()
        record = self._checked_keys.get(key)  # a key seen before: its digest matched then
        if record is None:
            start = len(KEY_PREFIX)
            key_id = key[start : start + 8] if key.startswith(KEY_PREFIX) else ""
            record = self._keys.get(key_id)
            if record is None or not hmac.compare_digest(record.digest, _digest(key)):
                raise UnauthenticatedError("the API key is not valid")
            if len(self._checked_keys) < 10_000:
                self._checked_keys[key] = record
        state = record.state(self.clock())
        if state != "active":
            raise UnauthenticatedError(f"the API key {record.prefix} is {state}")
        return record

    # -- changing ------------------------------------------------------------------------------

    def create(
        self,
        name: str = "",
        scopes: Iterable[str] = ("predict:*",),
        *,
        expires: float | None = None,
        rate_limit: float | None = None,
        burst: int | None = None,
        deployment: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Mint a key. Returns the record and the key, which is shown once and never kept.

        `deployment`: the deployment whose deploy mints it; `revoke_minted_for` revokes it.
        """
        checked = parse_scopes(scopes)
        _check_limits(expires, rate_limit, burst, self.clock())
        if deployment is not None and (deployment == ALL or not _NAME.match(deployment)):
            raise InvalidInputError(f"deployment: '{deployment}' is not a deployment name")
        with self._changing():
            record, secret = self._mint(name, checked, expires, rate_limit, burst)
            if deployment is not None:
                record = self._keys[record.id] = replace(record, deployment=deployment)
        return record, secret

    def revoke_minted_for(self, deployment: str) -> list[ApiKey]:
        """Revoke the active keys minted by `deployment`'s deploy (it is being deleted)."""
        with self._changing():
            now = self.clock()
            mine = [key for key in self._keys.values()
                    if key.deployment == deployment and key.state(now) == "active"]  # fmt: skip
            for key in mine:
                self._keys[key.id] = replace(key, revoked=now)
        return [self._keys[key.id] for key in mine]

    def revoke(self, key_id: str, *, at: float | None = None) -> ApiKey:
        """Revoke a key by id, prefix or key (at `at`, default now); it stays listed."""
        with self._changing():
            record = self.get(key_id)
            when = self.clock() if at is None else at
            if record.revoked is None or record.revoked > when:
                record = replace(record, revoked=when)
                self._keys[record.id] = record
        return record

    def rotate(self, key_id: str, *, grace_s: float = 0.0) -> tuple[ApiKey, str]:
        """Replace a key by a new one with the same name, scopes, expiry and limits.

        The old key keeps working for `grace_s` seconds (so callers can switch), then stops.
        Returns the new record and key (shown once).
        """
        if not 0 <= grace_s <= 30 * 86400:
            raise InvalidInputError("grace_s: between 0 and 30 days")
        with self._changing():
            old = self.get(key_id)
            state = old.state(self.clock())
            if state != "active":
                raise InvalidInputError(f"the API key {old.prefix} is {state}: create one")
            new, secret = self._mint(old.name, old.scopes, old.expires, old.rate_limit, old.burst)
            new = self._keys[new.id] = replace(new, deployment=old.deployment)
            retire = self.clock() + grace_s
            self._keys[old.id] = replace(old, revoked=retire, rotated_to=new.id)
        return new, secret

    def _mint(
        self,
        name: str,
        scopes: tuple[str, ...],
        expires: float | None,
        rate_limit: float | None,
        burst: int | None,
    ) -> tuple[ApiKey, str]:
        key_id = secrets.token_hex(4)
        while key_id in self._keys:
            key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, str(name)[:200], scopes, self.clock(), _digest(secret),
                        expires=expires, rate_limit=rate_limit, burst=burst)  # fmt: skip
        self._keys[key_id] = record
        return record, secret

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        with super()._changing():
            yield
        self._checked_keys.clear()
