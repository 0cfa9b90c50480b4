"""Who may do what: the admin token, API keys with scopes, per-key rate limits and model ACLs.

Every transport asks the same `Guard`: `identify()` turns an `Authorization` header into a
`Principal` (or 401, or 429 once the key's bucket is empty), `require()` adds the scope and the
registry model's access rules (403). Registry models may carry access rules (`AccessRules`):
lists of who may `read` (metadata), `deploy` (control API) and `call` (inference) them; a model
without rules is open to every key whose scopes cover the deployment.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nstarx_jupyter.errors import (
    ForbiddenError,
    InvalidInputError,
    ModelNotFoundError,
    RateLimitedError,
    UnauthenticatedError,
)
from nstarx_jupyter.security.keys import ADMIN, KEY_PREFIX, ApiKey, KeyStore, key_prefix
from nstarx_jupyter.security.shared import SharedFile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from nstarx_jupyter.security.hosts import AllowedHosts

__all__ = [
    "ANONYMOUS",
    "PERMISSIONS",
    "AccessRules",
    "DeploymentFacts",
    "Guard",
    "KeyForbiddenError",
    "KeyRateLimitedError",
    "Principal",
    "RefusedCaller",
    "admin_token",
]

PERMISSIONS = ("read", "deploy", "call")
"""What a registry model's access rules grant."""
_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret


def admin_token(folder: Path) -> str:
    """The server owner's token in `folder/admin-token` (owner-only), made on first use."""
    path = folder / _TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o077:
            raise InvalidInputError(f"{path} is readable by others: chmod 600 it (or delete it)")
        token = path.read_text().strip()
        if token:
            return token
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    with contextlib.suppress(FileExistsError):  # another process made it first: use that one
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        return token
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key (its id and name), the admin, or nobody."""

    key: str
    """The key id, `admin` for the admin token, `-` for an anonymous caller."""
    name: str = ""
    record: ApiKey | None = None

    @property
    def is_admin(self) -> bool:
        """The server's owner (the admin token or a key with the `admin` scope)."""
        return self.key == ADMIN or (self.record is not None and ADMIN in self.record.scopes)


ANONYMOUS = Principal("-")
_OWNER = Principal(ADMIN, ADMIN)


class RefusedCaller(Exception):  # noqa: N818 - a mixin of the two errors below, not raised alone
    """A refusal of a caller the guard had identified: the audit log names `principal`."""

    principal: Principal


class KeyForbiddenError(ForbiddenError, RefusedCaller):
    """A 403 for an identified key (or the admin), kept for the audit record of the call."""

    def __init__(self, message: str, principal: Principal) -> None:
        super().__init__(message)
        self.principal = principal


class KeyRateLimitedError(RateLimitedError, RefusedCaller):
    """A 429 for an identified key that used up its rate limit."""

    def __init__(
        self,
        message: str,
        retry_after_s: int,
        principal: Principal,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message, retry_after_s, headers)
        self.principal = principal


class AccessRules(SharedFile):
    """Registry models' access lists, in a JSON file shared by the processes of one home.

    `{"iris": {"call": ["fraud-app"], "deploy": ["alice"], "read": ["bob"]}}`: an entry is a
    key's name (its holder, kept across rotations), a key id or prefix, or `*`. A permission
    that is not listed is not restricted. `deploy` and `call` imply `read`.
    """

    what = "access file"

    def __init__(self, path: Path | None = None) -> None:
        self._rules: dict[str, dict[str, tuple[str, ...]]] = {}
        super().__init__(path)

    def _load(self, doc: Any) -> None:
        self._rules = {model: {p: tuple(rule[p]) for p in PERMISSIONS if p in rule}
                       for model, rule in (doc or {}).items()}  # fmt: skip

    def _dump(self) -> Any:
        return {m: {p: list(w) for p, w in sorted(r.items())}
                for m, r in sorted(self._rules.items())}  # fmt: skip

    def __bool__(self) -> bool:
        self.refresh()
        return bool(self._rules)

    def rules(self) -> dict[str, dict[str, list[str]]]:
        """Every model's rules."""
        self.refresh()
        return {model: {p: list(who) for p, who in rule.items()}
                for model, rule in sorted(self._rules.items())}  # fmt: skip

    def set(self, model: str, **permissions: Iterable[str] | None) -> dict[str, list[str]]:
        """Replace the listed permissions of `model` (None lifts one; all None clears them)."""
        unknown = set(permissions) - set(PERMISSIONS)
        if unknown:
            raise InvalidInputError(f"access: '{sorted(unknown)[0]}' is not read, deploy or call")
        with self._changing():
            rule = dict(self._rules.get(model, {}))
            for permission, who in permissions.items():
                if who is None:
                    rule.pop(permission, None)
                    continue
                listed = isinstance(who, list | tuple | set | frozenset)
                if not listed or not all(isinstance(w, str) and w for w in who):
                    raise InvalidInputError(f"access: {permission} is a list of key names or ids")
                rule[permission] = tuple(dict.fromkeys(who))
            if rule:
                self._rules[model] = rule
            else:
                self._rules.pop(model, None)
        return {p: list(who) for p, who in rule.items()}

    def allows(self, principal: Principal, permission: str, model: str) -> bool:
        """Whether `principal` has `permission` on registry model `model`."""
        rule = self._rules.get(model)
        if rule is None or principal.is_admin:
            return True
        lists = [rule.get(p) for p in (("read", "deploy", "call") if permission == "read"
                                        else (permission,))]  # fmt: skip
        if all(who is None for who in lists):
            return True
        record = principal.record
        if record is None:
            return False
        names = {"*", record.name, record.id, record.prefix}
        return any(who is not None and names.intersection(who) for who in lists)


class _Bucket:
    """A token bucket: `rate` tokens a second, `capacity` at most."""

    __slots__ = ("capacity", "clock", "last", "policy", "rate", "tokens")

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.clock = clock
        self.last = clock()
        # The policy as a quota over a window: the window refills a full bucket, the quota is
        # what the rate allows in it (the sustained rate; the bucket's burst is `r` when full).
        window_s = max(1, math.ceil(capacity / rate))
        self.policy = f'"default";q={max(1, round(rate * window_s))};w={window_s}'

    def headers(self) -> tuple[tuple[str, str], ...]:
        """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) after a take.

        `r` is the whole tokens left, `t` the seconds until the bucket is full again.
        """
        reset_s = math.ceil(max(0.0, self.capacity - self.tokens) / self.rate)
        return (("ratelimit-policy", self.policy),
                ("ratelimit", f'"default";r={int(self.tokens)};t={reset_s}'))  # fmt: skip

    def take(self) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class DeploymentFacts(Protocol):
    """What the guard asks the server about a deployment (the data plane answers)."""

    def serves(self, name: str) -> bool:
        """Whether a model, pipeline or graph of that name is served.

        A key that may not call an unknown name hears 404, as any caller of it does.
        """
        ...

    def registry_models(self, name: str) -> Iterable[str]:
        """The registry models (`models:/NAME/...`) behind a deployment.

        Their access rules apply to it.
        """
        ...


class _NoFacts:
    """A guard without a server: every name served, none behind a registry model."""

    def serves(self, name: str) -> bool:
        return True

    def registry_models(self, name: str) -> Iterable[str]:
        return ()


class Guard:
    """The one place that decides whether a call goes through.

    `enabled=False` (`nstarx serve --no-auth`) lets anonymous callers use the data plane; the
    control API needs the admin token or an API key either way. `public` names deployments
    open to anonymous callers (a deployment with `auth=False`, as KServe serves by default).
    """

    def __init__(
        self,
        keys: KeyStore,
        token: str,
        access: AccessRules | None = None,
        *,
        facts: DeploymentFacts | None = None,
        control_hosts: AllowedHosts | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.clock = clock
        """Seconds from any fixed point, for the rate limits' token buckets."""
        self.admin_token = token
        self.access = access if access is not None else AccessRules()
        self.enabled = enabled
        self.public: set[str] = set()
        self.facts: DeploymentFacts = facts if facts is not None else _NoFacts()
        """Which names are served and the registry models behind them (the data plane's)."""
        self._buckets: dict[str, _Bucket] = {}
        self.control_hosts = control_hosts
        """The `Host` values control calls may name (None: any); see `check_host`."""

    def is_admin(self, token: str) -> bool:
        """Whether `token` is the server's admin token (compared in constant time)."""
        return hmac.compare_digest(token.encode(), self.admin_token.encode())

    def identify(self, authorization: str | None, *, anonymous: bool = False) -> Principal:
        """Who sent `authorization` (`Bearer TOKEN`); takes one token from the key's bucket.

        Raises:
            UnauthenticatedError: no credential (unless `anonymous`), or not a valid one.
            KeyRateLimitedError: the key's rate limit is used up (`retry_after_s` says how long).
        """
        if not authorization:
            if anonymous:
                return ANONYMOUS
            raise UnauthenticatedError(
                "this call needs an API key: send 'Authorization: Bearer KEY'"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("send the API key as 'Authorization: Bearer KEY'")
        if not token.startswith(KEY_PREFIX) and self.is_admin(token):
            return _OWNER
        try:
            record = self.keys.verify(token)
        except UnauthenticatedError:
            if self.is_admin(token):  # an admin token that happens to look like a key
                return _OWNER
            raise
        if record.rate_limit is not None:
            self._spend(record)
        return Principal(record.id, record.name, record)

    def require(
        self,
        authorization: str | None,
        action: str,
        deployment: str | None = None,
        *,
        control: bool = False,
    ) -> Principal:
        """Identify the caller and check that it may do `action` on `deployment`.

        `action` is `predict` (inference, feedback), `read` (metadata, readiness), `manage`
        (control and repository calls), `metrics`, `admin` or `any` (any valid credential).
        `control` calls need a credential even when the data plane is open (`--no-auth`).

        Raises:
            UnauthenticatedError, RateLimitedError: see `identify`.
            ForbiddenError: the key's scopes or the model's access rules do not allow it.
        """
        open_call = not control and (
            not self.enabled
            or (action in ("predict", "read") and deployment is not None
                and deployment in self.public)
        )  # fmt: skip
        if control and not authorization:
            raise UnauthenticatedError(
                "the control API needs the admin token (in $NSTARX_HOME/security) or an API key"
            )
        principal = self.identify(authorization, anonymous=open_call)
        if principal is not ANONYMOUS:
            self.check(principal, action, deployment)
        return principal

    def check_host(self, host: str | None) -> None:
        """Raise `ForbiddenError` unless a control call's `Host` header names this server.

        Against DNS rebinding: a page whose name was re-pointed at this server still sends its
        own name as `Host`.
        """
        hosts = self.control_hosts
        if hosts is None or hosts.allows(host):
            return
        shown = (host or "")[:100]
        raise ForbiddenError(
            f"Host '{shown}' does not name this server: the control API answers "
            f"{', '.join(sorted(hosts.names))} (a reverse proxy's name: serve with "
            "--allow-host NAME)"
        )

    def check(self, principal: Principal, action: str, deployment: str | None = None) -> None:
        """Raise `ForbiddenError` unless `principal` (not anonymous) may do `action`."""
        if principal.is_admin or action == "any":
            return
        record = principal.record
        if record is None or not record.allows(action, deployment):
            if action in ("predict", "read") and deployment and not self.facts.serves(deployment):
                raise ModelNotFoundError(deployment)
            what = f"'{deployment}'" if deployment else "the server"
            raise KeyForbiddenError(
                f"{_who(principal)} may not {_VERBS.get(action, action)} {what}", principal
            )
        if deployment is not None and action in ("predict", "read", "manage") and self.access:
            permission = "call" if action == "predict" else "read"
            self.check_models(principal, permission, self.facts.registry_models(deployment))

    def may(self, principal: Principal, action: str, deployment: str | None = None) -> bool:
        """Whether `principal` may do `action` (anonymous callers: where the guard lets them)."""
        if principal is ANONYMOUS:
            return not self.enabled or (action in ("predict", "read") and deployment in self.public)
        try:
            self.check(principal, action, deployment)
        except (ForbiddenError, ModelNotFoundError):  # a name it does not serve: not allowed
            return False
        return True

    def check_models(self, principal: Principal, permission: str, models: Iterable[str]) -> None:
        """Raise `ForbiddenError` unless every registry model in `models` grants `permission`."""
        if not self.access:
            return
        for model in models:
            if not self.access.allows(principal, permission, model):
                raise KeyForbiddenError(
                    f"the registry model '{model}' does not let {_who(principal)} {permission} it",
                    principal,
                )

    def rate_limit_headers(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        """`RateLimit-Policy` and `RateLimit` for a caller whose key has a rate limit, else ()."""
        record = principal.record
        if record is None or record.rate_limit is None:
            return ()
        bucket = self._buckets.get(record.id)
        return () if bucket is None else bucket.headers()

    def _spend(self, record: ApiKey) -> None:
        rate = float(record.rate_limit or 0.0)
        capacity = float(record.burst or max(1.0, rate))
        bucket = self._buckets.get(record.id)
        if bucket is None or bucket.rate != rate or bucket.capacity != capacity:
            bucket = self._buckets[record.id] = _Bucket(rate, capacity, self.clock)
        wait = bucket.take()
        if wait > 0.0:
            seconds = max(1, math.ceil(wait))
            raise KeyRateLimitedError(
                f"the API key {record.prefix} is over its rate limit of {rate:g} requests/s; "
                f"retry after {seconds} s", seconds, Principal(record.id, record.name, record),
                bucket.headers(),
            )  # fmt: skip


_VERBS = {"metrics": "read the metrics of", "admin": "administer"}
"""How a refusal names the actions that are not verbs themselves (predict, read, manage are)."""


def _who(principal: Principal) -> str:
    if principal.record is None:
        return "an anonymous caller"
    named = f" ('{principal.name}')" if principal.name else ""
    return f"the API key {key_prefix(principal.key)}{named}"
