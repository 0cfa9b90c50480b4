"""Who may call what, and the record of it.

API keys (stored hashed) with scopes, expiry and rate limits; access rules on registry models;
the admin token; TLS; the audit log.
"""

from nstarx_jupyter.security.audit_log import AuditLog, AuditRecord, read_audit
from nstarx_jupyter.security.guard import (
    ANONYMOUS,
    AccessRules,
    DeploymentFacts,
    Guard,
    KeyForbiddenError,
    KeyRateLimitedError,
    Principal,
    RefusedCaller,
    admin_token,
)
from nstarx_jupyter.security.keys import ApiKey, KeyStore, key_prefix, parse_scopes

__all__ = [
    "ANONYMOUS",
    "AccessRules",
    "ApiKey",
    "AuditLog",
    "AuditRecord",
    "DeploymentFacts",
    "Guard",
    "KeyForbiddenError",
    "KeyRateLimitedError",
    "KeyStore",
    "Principal",
    "RefusedCaller",
    "admin_token",
    "key_prefix",
    "parse_scopes",
    "read_audit",
]
