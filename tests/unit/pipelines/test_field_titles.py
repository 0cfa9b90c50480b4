"""The labels the editor's properties form shows for component config fields (issue 22, item 9):
titles, not field names title-cased by pydantic ("Cache Ttl S")."""

from __future__ import annotations

import re

import pytest

from nstarx_jupyter.notebook import editing
from nstarx_jupyter.pipelines.component import field_title

ACRONYMS = {"TTL", "ID", "URL", "URI", "API", "V2"}


def _titles() -> list[tuple[str, str, str]]:
    return [
        (entry["name"], name, str(prop.get("title")))
        for entry in editing.library()
        for name, prop in (entry["config_schema"] or {}).get("properties", {}).items()
    ]


def test_the_model_steps_cache_fields_read_as_labels() -> None:
    titles = {(component, name): title for component, name, title in _titles()}
    assert titles["model", "cache_ttl_s"] == "Cache TTL (s)"
    assert titles["model", "cache_size"] == "Cache size"
    assert titles["model", "output_prefix"] == "Output prefix"


@pytest.mark.parametrize(("component", "name", "title"), _titles())
def test_every_config_field_has_a_sentence_case_title(
    component: str, name: str, title: str
) -> None:
    words = re.sub(r"\(.*?\)", "", title).split()
    assert words, f"{component}.{name} has no title"
    assert words[0][0].isupper()
    shouting = [w for w in words[1:] if w[0].isupper() and w not in ACRONYMS]
    assert not shouting, f"{component}.{name}: {title!r} reads as a title-cased field name"


def test_a_unit_goes_in_brackets() -> None:
    assert field_title("timeout_ms") == "Timeout (ms)"
    assert field_title("s") == "S"  # a name that is only a unit keeps it
    assert field_title("api_url") == "API URL"
