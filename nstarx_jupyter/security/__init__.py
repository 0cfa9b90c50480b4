"""Access to deployments: API keys (stored hashed), scoped to deployments."""

from nstarx_jupyter.security.keys import ApiKey, Guard, KeyStore, key_prefix

__all__ = ["ApiKey", "Guard", "KeyStore", "key_prefix"]
