"""The security state of one `$NSTARX_HOME`: its key file, access rules and audit log.

Every server and command of a home shares them: `nstarx keys revoke` changes the file a running
server reads (within a second), and both append to the same audit log.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.security.audit_log import AuditLog, AuditRecord
from nstarx_jupyter.security.guard import AccessRules
from nstarx_jupyter.security.keys import KeyStore

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "access_rules",
    "audit_dir",
    "audit_local",
    "key_store",
    "parse_duration",
    "security_dir",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def security_dir() -> Path:
    """`$NSTARX_HOME/security`: keys, access rules, the admin token (owner-only)."""
    folder = nstarx_home() / "security"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def audit_dir() -> Path:
    """`$NSTARX_HOME/audit`: the audit log's segments."""
    return nstarx_home() / "audit"


def key_store(folder: Path | None = None) -> KeyStore:
    """The keys of `folder` (default: the home's security folder)."""
    return KeyStore((folder or security_dir()) / "keys.json")


def access_rules(folder: Path | None = None) -> AccessRules:
    """The registry model access rules of `folder` (default: the home's security folder)."""
    return AccessRules((folder or security_dir()) / "access.json")


def audit_local(action: str, model: str = "", status: int = 200) -> None:
    """Record a management action done outside a server (by `nstarx keys ...`, say)."""
    with AuditLog(audit_dir()) as log:
        log.record(AuditRecord(time.time(), "admin", "cli", action, "cli", model, "", status,
                               0.0, "", "local"))  # fmt: skip
        log.flush_durable()


def parse_duration(text: str) -> float:
    """Seconds in `90`, `45s`, `10m`, `12h`, `30d` or `2w`."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidInputError(f"'{text}' is not a duration such as 90s, 10m, 12h or 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]
