"""How to call a deployment: cURL and Python snippets, and what may be shown of its key.

Widget-free, so the notebook card and the lab sidebar (through the server extension) show the
same snippets.
"""

from __future__ import annotations

import json
from typing import Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import ModelUri, is_registry_uri
from nstarx_jupyter.security import key_prefix

__all__ = ["KEY_ENV", "curl_snippet", "key_hint", "python_snippet", "registry_version"]

KEY_ENV = "NSTARX_API_KEY"
"""The environment variable a snippet reads the key from when it is not written in."""
_KEY_PLACEHOLDER = "<YOUR_KEY>"
_SNIPPET_WIDTH = 72


def key_hint(key: str | None) -> str | None:
    """What may be shown and stored of a key: its id prefix (`nsx_1a2b3c4d`) and an ellipsis."""
    if not key:
        return None
    return f"{key_prefix(key)}…"


def registry_version(storage_uri: object) -> str | None:
    """The registry version in a `models:/NAME/N` storage URI, else None."""
    if not isinstance(storage_uri, str) or not is_registry_uri(storage_uri):
        return None
    try:
        return ModelUri.parse(storage_uri).version
    except InvalidInputError:
        return None


def curl_snippet(url: str, example: dict[str, Any], api_key: str | None, auth: bool) -> str:
    """A cURL command that sends `example` to the deployment, with the key when `auth`.

    Without `api_key` the command reads it from `$NSTARX_API_KEY`.
    """
    body = json.dumps(example, separators=(",", ":")).replace("'", "'\\''")
    lines = [f"curl {url}/predict"]
    if auth:
        token = api_key or f"${KEY_ENV}"
        lines.append(f'-H "Authorization: Bearer {token}"')
    lines += ['-H "Content-Type: application/json"', f"-d '{body}'"]
    return " \\\n  ".join(lines)


def python_snippet(
    url: str,
    example: dict[str, Any],
    api_key: str | None,
    auth: bool,
    *,
    key_from_env: bool = False,
    output_names: dict[str, str] | None = None,
) -> str:
    """The same request through `InferenceClient`, with the key when `auth`.

    Without `api_key` the key is a placeholder, or with `key_from_env` read from
    `$NSTARX_API_KEY`. With the deployment's `output_names`, the snippet reads the renamed
    answer fields.
    """
    key = ""
    if auth:
        if api_key is None and key_from_env:
            key = f"    api_key=os.environ[{KEY_ENV!r}],\n"
        else:
            key = f"    api_key={api_key or _KEY_PLACEHOLDER!r},\n"
    record = repr(example)
    if len(record) > _SNIPPET_WIDTH and example:
        record = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in example.items()) + "}"
    imports = "import os\n\n" if "os.environ" in key else ""
    call = f"client.predict({record})"
    if output_names:
        fields = ", ".join(f"result[{name!r}]" for name in output_names.values())
        call = f"result = {call}\nprint({fields})"
    return (
        f"{imports}from nstarx_jupyter import InferenceClient\n\n"
        f"client = InferenceClient(\n    endpoint={url!r},\n{key})\n"
        f"{call}"
    )
