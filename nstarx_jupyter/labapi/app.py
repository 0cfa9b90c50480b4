"""`NstarxLabApp`: the jupyter_server extension that serves the sidebar's REST API."""

from __future__ import annotations

import threading

from jupyter_server.extension.application import ExtensionApp

from nstarx_jupyter.labapi.routes import route_handlers
from nstarx_jupyter.labapi.service import LabService

__all__ = ["NstarxLabApp"]


class NstarxLabApp(ExtensionApp):
    """Registers the routes of `routes.ROUTES` on Jupyter's server, all on one `LabService`."""

    name = "nstarx_jupyter.labapi"
    load_other_extensions = True

    def initialize_settings(self) -> None:
        """Open the service, and the registry behind it on a worker thread.

        MLflow's import and store set-up take seconds; done while the lab loads, they are not
        in the time the sidebar takes to open.
        """
        self.service = LabService()
        threading.Thread(target=self.service.warm, name="nstarx-lab-warm", daemon=True).start()

    def initialize_handlers(self) -> None:
        """Add the routes under `{base_url}nstarx/`."""
        self.handlers.extend(route_handlers(self.service))

    async def stop_extension(self) -> None:
        """Close the service's connections (the local server keeps running)."""
        self.service.close()
