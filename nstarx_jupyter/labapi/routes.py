"""The URL table: every route of the server extension, under `{base_url}nstarx/`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_server.utils import url_path_join

from nstarx_jupyter.labapi import handlers as h

if TYPE_CHECKING:
    from nstarx_jupyter.labapi.handlers import LabHandler
    from nstarx_jupyter.labapi.service import LabService

__all__ = ["NAMESPACE", "ROUTES", "route_handlers"]

NAMESPACE = "nstarx"
"""The first path segment of every route (after Jupyter's base URL)."""
_NAME = r"([^/]+)"

ROUTES: tuple[tuple[str, type[LabHandler]], ...] = (
    ("server", h.ServerHandler),
    ("models", h.ModelsHandler),
    (f"models/{_NAME}/versions", h.ModelVersionsHandler),
    ("deployments", h.DeploymentsHandler),
    (f"deployments/{_NAME}", h.DeploymentHandler),
    (f"deployments/{_NAME}/traffic", h.TrafficHandler),
    (f"deployments/{_NAME}/(promote|rollback)", h.RolloutHandler),
    (f"deployments/{_NAME}/snippets", h.SnippetsHandler),
    (f"deployments/{_NAME}/logs", h.LogsHandler),
    (f"deployments/{_NAME}/trend", h.TrendHandler),
    ("contexts", h.ContextsHandler),
    ("keys", h.KeysHandler),
    (f"keys/{_NAME}", h.KeyHandler),
    ("pipelines/library", h.PipelineLibraryHandler),
    ("pipelines/check", h.PipelineCheckHandler),
    ("pipelines/run", h.PipelineRunHandler),
    ("pipelines/deploy", h.PipelineDeployHandler),
    (f"pipelines/{_NAME}/versions", h.PipelineVersionsHandler),
    (rf"pipelines/{_NAME}/versions/(\d+)", h.PipelineVersionHandler),
)
"""(path under the namespace, handler): the methods a handler defines are the route's."""


def route_handlers(service: LabService) -> list[tuple[str, type[LabHandler], dict[str, Any]]]:
    """The table as tornado rules (the extension app prefixes Jupyter's base URL)."""
    return [(url_path_join(NAMESPACE, path), handler, {"service": service})
            for path, handler in ROUTES]  # fmt: skip
