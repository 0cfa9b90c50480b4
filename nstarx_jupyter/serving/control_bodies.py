"""The control API's JSON bodies (`/nstarx/v1`) as pydantic models, for the OpenAPI document.

Key requests, the price table's body, the drift reference's and explanations' bodies. The data
plane's bodies and the bases are in `bodies`; the answers both the server and its clients use
(keys, access rules, audit records, metrics, variants, events, cost, prices, trends, drift,
explanations, the A/B report) are in `protocol.control`, a
deployment's (`DeploymentView`) in `deployment.backend`, a pipeline's and an inference graph's
in `pipelines.served`.
"""

from __future__ import annotations

from pydantic import Field

from nstarx_jupyter.serving.bodies import ClosedBody, OpenBody

__all__ = [
    "DriftReferenceBody",
    "DriftWindow",
    "ExplainBody",
    "KeyCreateRequest",
    "KeyRotateRequest",
    "LogNote",
    "PricesBody",
]


class LogNote(OpenBody):
    """A note for a deployment's event log (one line of 2000 characters at most)."""

    text: str = Field(min_length=1, max_length=2000)


class KeyCreateRequest(ClosedBody):
    """A new API key: scopes (`predict:NAME`, `manage:NAME`, `metrics`, `admin`), limits."""

    name: str = ""
    scopes: list[str] | None = Field(default=None, min_length=1)
    deployments: list[str] | None = Field(default=None, min_length=1)
    """The older name of `scopes`."""
    expires: float | None = None
    """Epoch seconds."""
    expires_in_s: float | None = Field(default=None, gt=0)
    rate_limit: float | None = Field(default=None, gt=0)
    """Requests per second."""
    burst: int | None = Field(default=None, gt=0)
    deployment: str | None = None
    """The deployment whose deploy mints the key: deleting that deployment revokes it."""


class KeyRotateRequest(OpenBody):
    """How long the old key keeps working after a rotation (body optional)."""

    grace_s: float | None = Field(default=None, ge=0)


# -- resource use, cost, trends (issue 19) ---------------------------------------------------------


class PricesBody(ClosedBody):
    """`PUT /prices`: what an hour of each resource costs (answered as `control.PriceTable`)."""

    cpu_hour: float = Field(default=0.04048, ge=0)
    gb_hour: float = Field(default=0.004445, ge=0)
    gpu_hour: float = Field(default=0.526, ge=0)
    currency: str = Field(default="USD", min_length=1, max_length=500)
    source: str = Field(default="set by the user", min_length=1, max_length=500)


class DriftWindow(ClosedBody):
    """Past live traffic as the reference: from `since_s` to `until_s` seconds ago."""

    since_s: float = Field(gt=0, le=21600)
    until_s: float = Field(default=0, ge=0)


class DriftReferenceBody(OpenBody):
    """`PUT .../drift/reference`: a sample of the reference data, or a window of past traffic."""

    columns: dict[str, list[float | str | None]] | None = Field(default=None, max_length=256)
    """Each feature's values (at most 10,000 rows, all columns alike)."""
    predictions: list[float | str | None] | None = None
    source: str | None = None
    window: DriftWindow | None = None


class ExplainBody(ClosedBody):
    """`POST .../explain`: rows to explain (lists in feature order, or objects by feature)."""

    rows: list[list[float | None] | dict[str, float | None]] = Field(min_length=1, max_length=100)
    class_: str | None = Field(default=None, alias="class")
    """The class explained for every row (default: each row's predicted class)."""
