"""KServe InferenceGraphs served next to the models, at every inference path of the graph's name.

KServe's router answers a graph at its own URL, whatever the path, passing the request body to
the steps as it came; here a graph answers `POST /v1/models/NAME:predict`, `/v1/models/NAME/predict`
and `/v2/models/NAME/infer` the same way (`GraphRouter`). Each `serviceName` step calls that
deployment through the data plane (`DataPlane.graph_step`, the `StepCall` a host is given), at
the protocol KServe's controller would pick: V1 `:predict` or V2 `/infer`, where records are
answered as the product endpoint would (as the nstarx runtime does: serving/records.py); a failing
call answers the step with the status and `{"error": ...}` body the REST endpoint would send, so
`Soft` and `Hard` dependencies behave as on a cluster.

The control API's routes for them are in `graph_api.py`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nstarx_jupyter.errors import HTTP_STATUS, ConflictError, NotFoundError
from nstarx_jupyter.pipelines.inference_graph import GraphRouter
from nstarx_jupyter.pipelines.served import GraphView

if TYPE_CHECKING:
    from nstarx_jupyter.pipelines.inference_graph import GraphSpec
    from nstarx_jupyter.security import Guard
    from nstarx_jupyter.serving.metrics import ServerMetrics
    from nstarx_jupyter.serving.pipeline_host import PipelineHost
    from nstarx_jupyter.serving.repository import ModelRepository

__all__ = ["GRAPH_VERSION", "GraphHost", "StepCall"]
GRAPH_VERSION = "1"
StepCall = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]
"""(service, protocol `v1`/`v2`, body) → the status and body the deployment's endpoint answers."""
_KINDS = {status: kind.value.lower() for kind, status in HTTP_STATUS.items()}
"""A failed answer's status as the metrics' status label (a model's failures use the kind)."""


class GraphHost:
    """The graphs this server answers, by name."""

    def __init__(
        self,
        repository: ModelRepository,
        pipelines: PipelineHost,
        guard: Guard,
        metrics: ServerMetrics,
        call: StepCall,
    ) -> None:
        self.repository = repository
        self.pipelines = pipelines
        self.guard = guard
        """Whose `public` set a graph served without `auth` joins."""
        self.metrics = metrics
        self.call = call
        """How a step calls a deployment (the data plane's `graph_step`)."""
        self._routers: dict[str, GraphRouter] = {}
        self._created: dict[str, float] = {}

    def names(self) -> list[str]:
        """The served graphs' names."""
        return sorted(self._routers)

    def get(self, name: str) -> GraphRouter | None:
        """A served graph's router, or None."""
        return self._routers.get(name)

    def put(self, spec: GraphSpec) -> GraphRouter:
        """Serve `spec` (replacing a graph of that name).

        Raises:
            InvalidInputError: the graph cannot run here (the message names the field).
            ConflictError: a model or a pipeline is served under the graph's name.
        """
        name = spec.name
        if name in self.repository.names() or self.pipelines.get(name):
            raise ConflictError(f"a model or pipeline is already served as '{name}'")
        router = GraphRouter(spec, self.call)
        self._routers[name] = router
        if spec.auth:
            self.guard.public.discard(name)
        else:  # as an InferenceService without the annotation: open to every caller
            self.guard.public.add(name)
        self._created[name] = time.time()
        return router

    def delete(self, name: str) -> None:
        """Stop serving a graph."""
        if self._routers.pop(name, None) is None:
            raise NotFoundError(f"no inference graph '{name}'")
        self.guard.public.discard(name)
        self._created.pop(name, None)

    def describe(self, name: str) -> GraphView:
        """Name, endpoint, the services it calls, and the spec (sent with `exclude_defaults`)."""
        router = self._routers.get(name)
        if router is None:
            raise NotFoundError(f"no inference graph '{name}'")
        return GraphView(name=name, url=f"/v1/models/{name}:predict",
                         services=router.spec.services(), created=self._created[name],
                         spec=router.spec)  # fmt: skip

    async def route(self, name: str, body: bytes) -> tuple[int, bytes]:
        """One request through graph `name`: the status and body KServe's router would send."""
        router = self._routers.get(name)
        if router is None:
            raise NotFoundError(f"no inference graph '{name}'")
        started = time.perf_counter()
        status, answer = await router.route(body)
        outcome = "ok" if 200 <= status <= 299 else _KINDS.get(status, "internal")
        seconds = time.perf_counter() - started
        self.metrics.observe_request(name, GRAPH_VERSION, "graph", outcome, seconds)
        return status, answer
