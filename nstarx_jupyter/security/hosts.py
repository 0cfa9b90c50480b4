"""Which `Host` header names this server: the control API answers no other (DNS rebinding).

A web page on `evil.example` whose name an attacker re-points at 127.0.0.1 can make the browser
send requests to the local server; the browser still sends `Host: evil.example`, which names
no one here. IP addresses cannot be re-pointed, so only names need the list.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["LOCAL_NAMES", "AllowedHosts", "host_name"]

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
"""Names that always reach this machine's loopback."""
_WILDCARDS = ("", "0.0.0.0", "::")  # noqa: S104 - names of the wildcard address, not a bind


def host_name(header: str) -> str | None:
    """The name in a `Host` header (lower case, no port, no brackets); None when malformed."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8080
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        return value[1:end] or None
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.removesuffix(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The `Host` values a server bound to `bound_host` answers, plus `extra` names.

    Always: localhost, 127.0.0.1, ::1 and the bound address. A server bound to every address
    (0.0.0.0, ::) also answers its host name and any IP address (an address cannot be
    re-pointed by DNS). `extra` adds the names a reverse proxy forwards (`--allow-host`);
    `*` allows any Host. The port is not checked: a proxy may forward from another port.
    """

    def __init__(self, bound_host: str, extra: Iterable[str] = ()) -> None:
        wildcard = bound_host in _WILDCARDS
        names = set(LOCAL_NAMES)
        if wildcard:
            names.add(socket.gethostname().lower())
        else:
            names.add(host_name(bound_host) or bound_host.lower())
        extras = [host_name(name) or name.lower() for name in extra]
        self.any = "*" in extras
        self.any_ip = wildcard
        self.names = frozenset(names.union(extras))

    def allows(self, header: str | None) -> bool:
        """Whether a request with this `Host` header (None: it sent none) may be answered.

        A request without `Host` (HTTP/1.0) comes from no browser: it is allowed.
        """
        if header is None or self.any:
            return True
        name = host_name(header)
        if name is None:
            return False
        return name in self.names or (self.any_ip and _is_ip(name))
