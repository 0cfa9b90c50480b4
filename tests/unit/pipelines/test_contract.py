"""Every built-in component keeps the contract custom components are held to
(`nstarx_jupyter.pipelines.contract.check_component`)."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.tree import DecisionTreeRegressor

from nstarx_jupyter.pipelines import components
from nstarx_jupyter.pipelines.contract import check_component
from nstarx_jupyter.pipelines.library.explain import tree_explainer_config

ROWS: list[dict[str, Any]] = [
    {"amount": 12.0, "hour": 3, "country": "US", "a_prediction": 0.2, "b_prediction": 0.6},
    {"amount": 30.0, "hour": None, "country": "FR", "a_prediction": 0.9, "b_prediction": 0.7},
    {"amount": 18.0, "hour": 22, "country": "US", "a_prediction": 0.4, "b_prediction": 0.1},
]
X = [[r["amount"], float(r["hour"] or 0)] for r in ROWS]
Y = [1.0, 3.0, 2.0]


class _Models:
    """Scores `amount / 100`: enough for the model step's contract."""

    async def predict(self, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"prediction": row["amount"] / 100} for row in rows]

    async def explain(
        self, model: str, rows: list[dict[str, Any]], label: str | None
    ) -> dict[str, Any]:
        return {"features": ["amount"], "rows": [{"shap": [row["amount"] / 100]} for row in rows]}

    def exists(self, model: str) -> bool | None:
        return True


CASES: dict[str, dict[str, Any]] = {
    "validate": {"schema": {"type": "object", "required": ["amount"]}},
    "sink": {"sink": {"kind": "webhook", "url": "http://127.0.0.1:9/none"}},
    "coerce": {"types": {"hour": "float"}},
    "impute": {"strategy": "median", "columns": ["hour"]},
    "outliers": {"method": "iqr", "columns": ["amount"]},
    "scale": {"columns": ["amount"]},
    "one_hot": {"columns": ["country"]},
    "expression": {"features": {"per_hour": "amount / (hour or 1)"}},
    "explain": {"coefficients": {"amount": 0.5}, "baseline": {"amount": 20.0}},
    "explain_shap": {"model": "deployment:fraud"},
    "explain_tree": tree_explainer_config(
        DecisionTreeRegressor(random_state=0).fit(X, Y), ["amount", "hour"]
    ),
    "threshold": {"field": "a_prediction", "threshold": 0.5},
    "label_map": {"field": "country", "mapping": {"US": "United States"}},
    "confidence": {},
    "enrich": {"key": "country", "table": {"US": {"region": "NA"}, "FR": {"region": "EU"}}},
    "fields": {"fields": {"value": "amount"}},
    "records": {},
    "v2": {},
    "model": {"model": "models:/fraud/1", "output_prefix": "m_"},
    "ensemble": {"members": ["a_", "b_"]},
    "split": {"weights": {"a": 70, "b": 30}, "key": "country"},
    "router": {"branches": [{"name": "us", "when": [
        {"field": "country", "op": "==", "value": "US"}]}]},
}  # fmt: skip
ROWS_FOR: dict[str, list[dict[str, Any]]] = {
    "confidence": [{**r, "probabilities": {"0": 0.3, "1": 0.7}} for r in ROWS],
    "explain_tree": [{**r, "hour": r["hour"] or 0} for r in ROWS],  # trees need every feature
}


def test_every_built_in_component_has_a_contract_case() -> None:
    assert set(CASES) == {name for name, cls in components().items() if cls.__module__.startswith(
        "nstarx_jupyter.pipelines.library")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_component_keeps_the_contract(name: str) -> None:
    cls = components()[name]
    rows = ROWS_FOR.get(name, ROWS)
    config = dict(CASES[name])
    if cls.fittable and name != "explain":
        config |= cls(cls.Config.model_validate(config)).fit(rows)
    check_component(cls, config, rows, models=_Models())


def test_the_contract_catches_a_component_that_breaks_it() -> None:
    from nstarx_jupyter.pipelines.component import Batch, Component, ComponentConfig

    class Mutating(Component):
        kind = "input"
        name = "mutating"

        def process(self, batch: Batch) -> Batch:
            for row in batch.rows:
                row["x"] = 1  # changes rows another branch may hold
            return batch

    with pytest.raises(AssertionError, match="changed its input rows"):
        check_component(Mutating, {}, [{"x": 0}])

    class Undescribed(ComponentConfig):
        threshold: float = 0.5

    class Silent(Mutating):
        name = "silent"
        Config = Undescribed

    with pytest.raises(AssertionError, match="no description"):
        check_component(Silent, {}, [{"x": 0}])
