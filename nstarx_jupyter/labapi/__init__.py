"""The jupyter_server extension behind the lab's sidebar and pipeline document.

REST under `{base_url}nstarx/` on Jupyter's own authenticated server: the local model server,
the model catalog, deployments and their traffic, API keys, and the pipeline editor's checks,
test runs, versions and deploys. `models` defines every request and answer (and, through
`python -m nstarx_jupyter.labapi.schema`, the lab extension's TypeScript types); `service`
holds the logic, `handlers` and `routes` the HTTP side, `app` the `ExtensionApp`.

Enabled by `jupyter-config/server-config/nstarx_jupyter.json` (`"nstarx_jupyter.labapi": true`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstarx_jupyter.labapi.app import NstarxLabApp

__all__ = ["NstarxLabApp"]


def __getattr__(name: str) -> Any:
    """`NstarxLabApp` on first use: the API's models (and their schema) need no jupyter_server."""
    if name == "NstarxLabApp":
        from nstarx_jupyter.labapi.app import NstarxLabApp

        return NstarxLabApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The extension point jupyter_server loads: `NstarxLabApp`."""
    from nstarx_jupyter.labapi.app import NstarxLabApp

    return [{"module": "nstarx_jupyter.labapi", "app": NstarxLabApp}]
