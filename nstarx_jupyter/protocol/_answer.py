"""The base of the control API's answers, shared by `protocol.control` and `protocol.analysis`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Answer", "absent"]


def absent(value: object) -> bool:
    """A field left out of the JSON when it has no value (`exclude_if`)."""
    return value is None


class Answer(BaseModel):
    """A control-API answer: immutable; fields this version does not name are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)
