"""The contract every component keeps, as one check a custom component's tests can call.

```python
from nstarx_jupyter.pipelines.contract import check_component

def test_my_component():
    check_component(MyComponent, {"field": "amount"}, [{"amount": 3.0}, {"amount": 5.0}])
```

It checks what the editor, the validator and the executor rely on: the class attributes, a
pydantic config whose fields are described (the properties form shows the descriptions), a
palette entry that is plain JSON, ports with known types, a valid config accepted, rows that
come back one per row in order with plain JSON values, the input left untouched, and `fit`
returning config fields the config accepts.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel

from nstarx_jupyter.pipelines.component import Batch, Component, Context, PortType
from nstarx_jupyter.pipelines.spec import KIND_TITLES

if TYPE_CHECKING:
    from nstarx_jupyter.pipelines.component import ModelResolver

__all__ = ["check_component"]


def check_component(
    cls: type[Component[Any]],
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    *,
    models: ModelResolver | None = None,
) -> Any:
    """Run the contract on `cls` with a valid `config` and sample `rows`; returns the output.

    Raises:
        AssertionError: naming the rule the component breaks.
    """
    _declaration(cls)
    parsed = cls.Config.model_validate(config)
    _ensure(cls.problems(parsed) == [], f"{cls.name}: a valid config has problems")
    component = cls(parsed, Context(models, "contract"))
    before = copy.deepcopy(rows)
    batch = Batch(rows, [10 + i for i in range(len(rows))])  # positions need not start at 0
    inputs, _ = cls.ports(parsed)
    asyncio.run(component.setup())
    result = asyncio.run(component.run({inputs[0].name: [batch]}))
    _ensure(rows == before, f"{cls.name}: changed its input rows (copy them: {{**row}})")
    for port, value in result.items():
        json.dumps(_rows(value), allow_nan=False)  # plain JSON values, no NumPy scalars
        if isinstance(value, Batch) and cls.kind not in ("router",):
            _ensure(value.index == batch.index, f"{cls.name}: port '{port}' lost the row order")
    if cls.fittable:
        learnt = component.fit(rows)
        json.dumps(learnt, allow_nan=False)
        cls.Config.model_validate({**config, **learnt})
    return result


def _declaration(cls: type[Component[Any]]) -> None:
    _ensure(issubclass(cls, Component), f"{cls!r} is not a Component")
    _ensure(cls.name, f"{cls.__name__}: set the class attribute 'name'")
    _ensure(cls.kind in KIND_TITLES, f"{cls.name}: kind '{cls.kind}' is not a kind")
    _ensure(issubclass(cls.Config, BaseModel), f"{cls.name}: Config must be a pydantic model")
    for field, info in cls.Config.model_fields.items():
        _ensure(info.description, f"{cls.name}: config field '{field}' has no description")
    entry = json.loads(json.dumps(cls.describe()))
    _ensure(entry["name"] == cls.name, f"{cls.name}: describe() names another component")
    known = set(get_args(PortType))
    for port in entry["inputs"] + entry["outputs"]:
        _ensure(port["type"] in known, f"{cls.name}: port '{port['name']}' type {port['type']}")


def _ensure(condition: object, message: str) -> None:
    """An `assert` that `python -O` keeps: the contract is a test helper, not a debug aid."""
    if not condition:
        raise AssertionError(message)


def _rows(value: Any) -> Any:
    return value.rows if isinstance(value, Batch) else value
