"""What a pipeline step is: `Component`, its typed ports, the rows it passes on, and the library.

Every edge carries a `Batch`: records (dicts of named fields) with their position in the
request, so a router can split a request into branches and the branches meet again, row by row,
where they join. Models add their outputs to the records as named fields (`prediction`,
`confidence`, ...); the output formatter at the end turns the records into the response body.

A component declares its kind, its config model (`Component[MyConfig]`, or the older `Config =
MyConfig`; the editor builds its form from the model's JSON Schema) and its ports, which may
depend on the config (a router has one output per branch).
Components register in the library with `register_component()`, or from another package with an
entry point in the group `nstarx_jupyter.components`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from nstarx_jupyter.errors import ConflictError, InvalidInputError
from nstarx_jupyter.pipelines.spec import KIND_TITLES

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from nstarx_jupyter.pipelines.sinks import SinkOpener
    from nstarx_jupyter.pipelines.spec import NodeKind

__all__ = ["ENTRY_POINT_GROUP", "Batch", "Component", "ComponentConfig", "ConfigT", "Context",
           "ModelResolver", "Port", "PortType", "accepts", "is_packaged", "note_entry_point",
           "on_register", "register_component", "registered"]  # fmt: skip

ENTRY_POINT_GROUP = "nstarx_jupyter.components"
"""Packages add custom components with an entry point in this group (`name = module:Class`)."""

PortType = Literal["records", "scored", "response", "any"]
"""What travels on a port: feature records; records carrying model outputs (`scored`, which is
also `records`); the formatted response (only the pipeline's end takes it); `any` fits all."""


def accepts(wanted: PortType, given: PortType) -> bool:
    """Whether an input port of type `wanted` takes what an output port of type `given` sends."""
    if "any" in (wanted, given):
        return True
    return wanted == given or (wanted == "records" and given == "scored")


class Port(NamedTuple):
    """One input or output of a component."""

    name: str
    type: PortType = "records"
    many: bool = False
    """An input that takes several edges (an ensemble's members, the branches after a router)."""
    required: bool = True
    """An input that must be connected (outputs are never required)."""


IN = (Port("in", "records"),)
OUT = (Port("out", "records"),)


@dataclass
class Batch:
    """Records and their positions in the request (`index[i]` is where `rows[i]` came from)."""

    rows: list[dict[str, Any]]
    index: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = list(range(len(self.rows)))
        if len(self.index) != len(self.rows):
            raise ValueError("a batch needs one index per row")

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, positions: Sequence[int]) -> Batch:
        """The rows at `positions` (indices into this batch, not into the request)."""
        return Batch([self.rows[p] for p in positions], [self.index[p] for p in positions])

    def replace(self, rows: list[dict[str, Any]]) -> Batch:
        """New rows for the same positions."""
        return Batch(rows, list(self.index))

    @staticmethod
    def merge(batches: Sequence[Batch]) -> Batch:
        """The union of batches from several edges, in request order.

        A row that reached this point on two edges is kept once, with the fields of both (the
        later edge wins).
        """
        if len(batches) == 1:
            return batches[0]
        by_index: dict[int, dict[str, Any]] = {}
        for batch in batches:
            for i, row in zip(batch.index, batch.rows, strict=True):
                by_index[i] = {**by_index[i], **row} if i in by_index else row
        order = sorted(by_index)
        return Batch([by_index[i] for i in order], order)


class ModelResolver(Protocol):
    """How a pipeline reaches its models: the serving core on a server, the registry in a kernel.

    `model` is a registry URI (`models:/fraud/3`, `models:/fraud@champion`) or `deployment:NAME`.
    """

    async def predict(self, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's named outputs (`prediction`, `confidence`, ...), in order."""
        ...

    def exists(self, model: str) -> bool | None:
        """Whether the model exists (None: cannot tell from here)."""
        ...


@dataclass
class Context:
    """What a running pipeline offers its components."""

    models: ModelResolver | None = None
    node_id: str = ""
    sinks: SinkOpener | None = None
    """The server's sinks (`sink` steps send records there); None outside a server."""


# How a config field's name reads as a form label: words that are abbreviations, and a last
# word that is a unit (cache_ttl_s is "Cache TTL (s)", not pydantic's "Cache Ttl S").
_TITLE_WORDS = {"ttl": "TTL", "id": "ID", "url": "URL", "uri": "URI", "api": "API",
                "coef": "coefficients", "stats": "statistics", "v2": "V2"}  # fmt: skip
_UNITS = {"s": "s", "ms": "ms", "pct": "%", "km": "km"}


def field_title(name: str, info: object = None) -> str:
    """A config field's label: sentence case, abbreviations spelt out, a unit in brackets."""
    del info  # pydantic's `field_title_generator` passes the field's info too
    words = [word for word in name.split("_") if word]
    unit = _UNITS[words.pop()] if len(words) > 1 and words[-1] in _UNITS else None
    text = " ".join(_TITLE_WORDS.get(word, word) for word in words)
    text = text[:1].upper() + text[1:]
    return f"{text} ({unit})" if unit else text


class ComponentConfig(BaseModel):
    """Base of component configs: unknown keys are mistakes, not silently dropped.

    Each field's schema has a title for the editor's form (`field_title` of its name unless the
    field sets one).
    """

    model_config = ConfigDict(extra="forbid", field_title_generator=field_title)


ConfigT = TypeVar("ConfigT", bound=ComponentConfig, default=ComponentConfig)
"""A component's config model. Its default keeps a subclass written without a type parameter
(`class Mine(Component)` with `Config = MineConfig`) typed as it was: `ComponentConfig`."""


class Component(Generic[ConfigT]):
    """One kind of pipeline step, generic over its config model.

    A subclass names its config model as the type parameter, `Component[ThresholdConfig]`:
    that sets `Config` and types `self.config` and the config the classmethods receive. It
    sets the class attributes and overrides `process` (one batch in, one batch out) or, for
    several ports or awaiting, `run`.

    `fit` learns parameters from reference rows (means for imputation, bounds for outliers) and
    returns them as config fields, so a fitted pipeline is still plain JSON.
    """

    kind: ClassVar[NodeKind]
    name: ClassVar[str]
    """The library name a node refers to (`impute`, `threshold`...)."""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    """The config model: the type parameter, unless the class sets it (the older way)."""
    fittable: ClassVar[bool] = False
    inputs: ClassVar[tuple[Port, ...]] = IN
    """The input ports (override `ports` instead when they depend on the config)."""
    outputs: ClassVar[tuple[Port, ...]] = OUT
    """The output ports."""

    def __init__(self, config: ConfigT, context: Context | None = None) -> None:
        self.config = config
        self.context = context or Context()

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Take `Config` from the type parameter; a `Config` the class sets must fit it."""
        super().__init_subclass__(**kwargs)
        declared = _config_parameter(cls)
        if declared is None:
            return
        # A class cloudpickle rebuilds (a component shipped from a notebook) is made empty and
        # filled in afterwards: it takes `Config` here, then its pickled `Config`, the same.
        if "Config" not in cls.__dict__:
            cls.Config = declared
        elif not (isinstance(cls.Config, type) and issubclass(cls.Config, declared)):
            raise TypeError(
                f"{cls.__name__}.Config is {cls.Config!r}, not the {declared.__name__} "
                f"its type parameter names (or a subclass of it)"
            )

    @classmethod
    def ports(cls, config: ConfigT | None) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """Inputs and outputs; `config` is None when the node's config is invalid."""
        return cls.inputs, cls.outputs

    @classmethod
    def problems(cls, config: ConfigT) -> list[str]:
        """Mistakes in a config that its schema cannot express (checked by `validate`)."""
        return []

    @classmethod
    def unfitted(cls, config: ConfigT) -> list[str]:
        """What a fittable component still has to learn (`Pipeline.fit` fills it in)."""
        return []

    @classmethod
    def model_uris(cls, config: ConfigT) -> list[str]:
        """The models a node of this component calls (checked by `validate` when it can)."""
        return []

    async def setup(self) -> None:
        """Prepare before the first run (load a model, fit a detector on its reference rows)."""

    async def run(self, inputs: Mapping[str, Sequence[Batch]]) -> dict[str, Any]:
        """Map each input port's batches to each output port's value."""
        batches = [batch for port in inputs.values() for batch in port]
        return {"out": self.process(Batch.merge(batches))}

    def process(self, batch: Batch) -> Batch:
        """One batch in, one out (the usual step)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither run nor process")

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Config fields learnt from reference rows (only when `fittable`)."""
        return {}

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The palette entry: name, kind, title, description, config schema and ports."""
        inputs, outputs = cls.ports(None)
        return {
            "name": cls.name,
            "kind": cls.kind,
            "title": cls.title or cls.name,
            "description": cls.description,
            "fittable": cls.fittable,
            "config_schema": cls.Config.model_json_schema(),
            "inputs": [port._asdict() for port in inputs],
            "outputs": [port._asdict() for port in outputs],
        }


def _config_parameter(cls: type[Component[Any]]) -> type[ComponentConfig] | None:
    """The config model `cls` names as its base's type parameter, if it names one.

    Only the class's own bases count (`__orig_bases__` in its `__dict__`): a subclass of
    `Router(Component[RouterConfig])` inherits `Config` like any class attribute. A type
    variable (a generic intermediate class) or `Any` names none.
    """
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin, arguments = typing.get_origin(base), typing.get_args(base)
        if not (isinstance(origin, type) and issubclass(origin, Component)) or len(arguments) != 1:
            continue
        (argument,) = arguments
        if isinstance(argument, typing.TypeVar) or argument is Any:
            return None
        if isinstance(argument, type) and issubclass(argument, ComponentConfig):
            return argument
        raise TypeError(
            f"{cls.__name__}: the type parameter of {origin.__name__} must be a ComponentConfig "
            f"subclass, not {argument!r}"
        )
    return None


_LIBRARY: dict[str, type[Component[Any]]] = {}
_LISTENERS: list[Callable[[], None]] = []
_ENTRY_POINT_CLASSES: set[type[Component[Any]]] = set()
_LIBRARY_PACKAGE = "nstarx_jupyter.pipelines.library"


def is_packaged(cls: type[Component[Any]]) -> bool:
    """Whether a server knows `cls` by itself: built in, or from an installed entry point.

    Others were registered in a kernel (a notebook's class): `Pipeline.deploy()` ships them.
    """
    module = cls.__module__
    builtin = module == _LIBRARY_PACKAGE or module.startswith(f"{_LIBRARY_PACKAGE}.")
    return builtin or cls in _ENTRY_POINT_CLASSES


def note_entry_point(cls: type[Component[Any]]) -> None:
    """Remember that `cls` came from an installed entry point (a server knows it by itself)."""
    _ENTRY_POINT_CLASSES.add(cls)


def on_register(listener: Callable[[], None]) -> None:
    """Call `listener` after each registration (open editors refresh their palettes)."""
    _LISTENERS.append(listener)


def register_component(cls: type[Component[Any]], *, replace: bool = False) -> type[Component[Any]]:
    """Add a component class to the library (usable as a decorator); returns the class."""
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise InvalidInputError(f"{cls!r} is not a Component subclass")
    for attribute in ("kind", "name"):
        if not getattr(cls, attribute, None):
            raise InvalidInputError(f"{cls.__name__} needs a class attribute '{attribute}'")

    if cls.kind not in KIND_TITLES:
        raise InvalidInputError(f"{cls.__name__}: kind must be one of {', '.join(KIND_TITLES)}")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, BaseModel)):
        raise InvalidInputError(f"{cls.__name__}.Config must be a pydantic model")
    known = _LIBRARY.get(cls.name)
    if known is not None and known is not cls and not replace:
        raise ConflictError(
            f"a component named '{cls.name}' is already registered ({known.__module__}."
            f"{known.__qualname__}); pass replace=True to override it"
        )
    _LIBRARY[cls.name] = cls
    for listener in list(_LISTENERS):
        listener()
    return cls


def registered() -> dict[str, type[Component[Any]]]:
    """The components registered so far (`palette.components()` loads the built-in ones first)."""
    return dict(_LIBRARY)
