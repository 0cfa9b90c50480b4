"""A KServe deployment's history: the core/v1 Events of its objects, and nstarx's notes among them.

KServe's event recorder writes Events on the InferenceService (`InferenceServiceReady`,
`InferenceServiceNotReady`...); nstarx adds its own (reason `NstarxNote`) for what a rollout
decided. A split's history is that of its InferenceGraph and of each variant's service.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from nstarx_jupyter.deployment.kube_api import FIELD_MANAGER, GROUP, KINDS
from nstarx_jupyter.errors import InvalidInputError

__all__ = ["NOTE_REASON", "note_event", "read_events"]

NOTE_REASON = "NstarxNote"


def read_events(core: Any, namespace: str, objects: list[tuple[str, str]]) -> list[str]:
    """One line per Event of the `(kind, name)` objects, oldest first, notes marked."""
    rows = []
    for kind, name in objects:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        listed = core.list_namespaced_event(namespace, field_selector=selector)
        for event in listed.items:
            at = (event.event_time or event.last_timestamp or event.first_timestamp
                  or event.metadata.creation_timestamp)  # fmt: skip
            stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else "-"
            line = " ".join((event.message or "").split())
            if event.reason == NOTE_REASON:
                rows.append((at, f"{stamp} note: {line}"))
            else:
                rows.append((at, f"{stamp} {event.type or 'Normal'} {event.reason}: {line}"))
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    rows.sort(key=lambda row: row[0] or epoch)
    return [text for _, text in rows]


def note_event(k8s: Any, namespace: str, target: dict[str, Any], text: str) -> Any:
    """The Event (reason `NstarxNote`) that records `text` on the object `target`.

    Raises:
        InvalidInputError: an empty text, or one over 2000 characters.
    """
    line = " ".join(text.split())
    if not line or len(line) > 2000:
        raise InvalidInputError("text: a non-empty string of 2000 characters at most")
    models = k8s.client
    now = dt.datetime.now(dt.UTC)
    kind, name = target["kind"], target["metadata"]["name"]
    return models.CoreV1Event(
        metadata=models.V1ObjectMeta(generate_name=f"{name}."),
        involved_object=models.V1ObjectReference(
            api_version=f"{GROUP}/{KINDS[kind][0]}", kind=kind, name=name,
            namespace=namespace, uid=target["metadata"].get("uid"),
        ),
        reason=NOTE_REASON, message=line, type="Normal", count=1,
        first_timestamp=now, last_timestamp=now,
        source=models.V1EventSource(component=FIELD_MANAGER),
    )  # fmt: skip
