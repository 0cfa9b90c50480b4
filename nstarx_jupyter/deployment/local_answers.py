"""The local server's control answers as the backend's types: checked as they enter.

`LocalBackend` and the KServe backend's runtime metrics both parse answers with `parse_answer`;
a deployment's answer becomes a `Description`, and its status the stages `watch` reports.
"""

from __future__ import annotations

import time
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from nstarx_jupyter.deployment.backend import DeploymentView, Description, Progress
from nstarx_jupyter.errors import NstarxError

__all__ = ["describe_local", "parse_answer", "stages_of"]

_M = TypeVar("_M", bound=BaseModel)


def describe_local(view: DeploymentView, url: str | None) -> Description:
    """A description from the local control API's answer (`ControlPlane.describe`)."""
    return Description(
        name=view.name, target="local", revision=view.revision, status=view.status,
        reason=view.reason or None, spec=view.spec, traffic=view.traffic, stable=view.stable,
        url=url, created=view.created, updated=view.updated,
    )  # fmt: skip


def parse_answer(model: type[_M], doc: object, what: str, source: str = "the local server") -> _M:
    """`doc`, the server's answer to `what` (`GET /keys`), as `model`, or `NstarxError`.

    An answer that is not one is the server's bug (or a server of another version): it is
    refused where it enters, naming the field, rather than where a caller reads it.
    """
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the answer"
        raise NstarxError(
            f"{source} answered {what} with a malformed {model.__name__} "
            f"({exc.error_count()} problem(s); {where}: {problem['msg']})"
        ) from None


_STAGES = {
    "Ready": ("scheduled", "loaded", "ready"),
    "Idle": ("scheduled", "ready"),  # scaled to zero: it loads on the next request
    "Loading": ("scheduled",),
    "Failed": ("scheduled", "failed"),
    "Unknown": (),
}
_SAY = {
    "accepted": "revision {revision} accepted",
    "scheduled": "the local server took revision {revision}",
    "loaded": "model loaded",
    "ready": "ready",
    "failed": "failed",
}


def stages_of(described: Description) -> list[Progress]:
    """The stages a local deployment has passed, as its description shows them."""
    now = time.time()
    reached = ("accepted", *_STAGES.get(described.status, ()))
    steps = []
    for stage in reached:
        message = _SAY[stage].format(revision=described.revision)
        if stage == "ready" and described.status == "Idle":
            message = "ready (scaled to zero: loads on the next request)"
        reason = described.reason if stage == "failed" else None
        if reason:
            message = f"failed: {reason}"
        steps.append(Progress(stage=stage, message=message, reason=reason, at=now))
    return steps
