"""The `explain_shap` post-processor: each record's SHAP values, from the server's explainer.

Unlike `explain` and `explain_tree`, which carry a copy of a linear or tree model in their
config, this step asks the model resolver for the explanation: on a server, the same
computation as `POST /nstarx/v1/deployments/NAME/explain` (SHAP's tree, linear or kernel
explainer over the deployment's loaded model, with its drift reference as background), so the
numbers a pipeline adds equal those `Deployment.explain()` shows; in a kernel, that call to the
server. It explains deployments (`deployment:NAME`), usually the one the pipeline's model node
calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.pipelines.component import (
    Component,
    Port,
    register_component,
)
from nstarx_jupyter.pipelines.library._fields import merged, where
from nstarx_jupyter.pipelines.library.explain import RankedContributions, ranked
from nstarx_jupyter.pipelines.library.scoring import is_model_uri

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from nstarx_jupyter.pipelines.component import Batch

__all__ = ["MAX_ROWS", "ShapConfig", "ShapExplainer"]

MAX_ROWS = 100
"""Records one request may have explained (the explain route's own limit)."""


class ShapConfig(RankedContributions):
    """Config of `explain_shap`."""

    model: str = Field(
        title="Deployment",
        description="The deployment whose model is explained, as deployment:NAME (usually the "
        "one the model node calls).",
    )
    label: str | None = Field(
        default=None,
        title="Class",
        description="The class explained for every record; empty explains each record's "
        "predicted class.",
    )
    output: str = Field(
        default="shap",
        title="Output field",
        description="The field that receives {feature: SHAP value}, largest first.",
    )


@register_component
class ShapExplainer(Component[ShapConfig]):
    """Adds each record's SHAP values by the deployment's model, largest first."""

    kind = "postprocess"
    name = "explain_shap"
    title = "Explain (SHAP)"
    description = (
        "Add each record's SHAP values (tree, linear or kernel explainer) by a deployment's "
        "model, largest first: the numbers Deployment.explain() shows."
    )

    inputs = (Port("in", "records"),)
    outputs = (Port("out", "scored"),)

    @classmethod
    def problems(cls, config: ShapConfig) -> list[str]:
        """A model that is not a deployment."""
        if not is_model_uri(config.model) or not ModelUri.parse(config.model).is_deployment:
            return [
                f"'{config.model}' is not a deployment; SHAP values come from a deployment's "
                "explainer: use deployment:NAME"
            ]
        return []

    @classmethod
    def model_uris(cls, config: ShapConfig) -> list[str]:
        """The deployment explained (so a pipeline calling a missing one is refused)."""
        return [config.model]

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """Each record with its SHAP values in `output`."""
        batch = merged(inputs)
        if not batch:
            return {"out": batch}
        config = self.config
        if len(batch) > MAX_ROWS:
            raise InvalidInputError(
                f"the SHAP step explains at most {MAX_ROWS} records a request ({len(batch)} came)"
            )
        resolver = self.context.models
        explain = getattr(resolver, "explain", None)
        if explain is None:
            raise NstarxError(
                f"cannot explain with '{config.model}': this pipeline runs without a model "
                "resolver that explains (run it on the server, or in a notebook session)"
            )
        features = [{k: v for k, v in row.items() if not k.startswith("_")} for row in batch.rows]
        try:
            answer = await explain(config.model, features, config.label)
        except InvalidInputError as exc:  # a record the explainer cannot read: say which
            raise InvalidInputError(f"{where(batch.index[0])}: {exc.message}") from None
        names, explained = answer["features"], answer["rows"]
        if len(explained) != len(batch):
            raise NstarxError(f"{len(explained)} explanations for {len(batch)} records")
        rows = []
        for row, one in zip(batch.rows, explained, strict=True):
            values = dict(zip(names, one["shap"], strict=True))
            rows.append({**row, config.output: ranked(values, config.top_k)})
        return {"out": batch.replace(rows)}
