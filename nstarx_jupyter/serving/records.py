"""Records answered wherever a body of records arrives: the product endpoint, and the V1/V2 paths.

KServe's InferenceGraph router posts a request's body, as it came, to each step's `:predict`
(V1) or `/infer` (V2) path, whatever path the caller used; a split on a cluster is such a graph.
So a client sending records (or `{"instances": [[...]]}` rows) to a split's URL reaches a
variant's V1 or V2 path with them. The nstarx runtime answers such a body there as its product
endpoint would (`is_records_body` tells it from the protocol's own body), so the same call works
on a split locally and on a cluster; a body of the path's own protocol is answered as before.
`DataPlane.answer_records` answers them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.protocol import v1
from nstarx_jupyter.protocol.records import records_to_tensors, split_records

if TYPE_CHECKING:
    from nstarx_jupyter.serving.model_call import Decoder

__all__ = ["is_records_body", "records_decoder"]

_PROTOCOL_KEYS = {"v2": ("inputs",), "v1": ("instances", "inputs")}


def records_decoder(doc: Any) -> tuple[Decoder, bool]:
    """The decoder of a product endpoint body, and whether the body was one record.

    Records (an object of features, or a list of them), or `{"instances": [[...], ...]}`: rows
    in the model's feature order.
    """
    if isinstance(doc, dict) and len(doc) == 1:
        rows = doc.get("instances")
        if isinstance(rows, list) and rows and all(isinstance(row, list) for row in rows):
            return functools.partial(v1.decode_instances, doc), False
    records, single = split_records(doc)
    return functools.partial(records_to_tensors, records), single


def is_records_body(doc: Any, protocol: str) -> bool:
    """Whether a JSON body sent to a `v1` or `v2` path holds records rather than that protocol.

    Records: a list of objects, or an object without the protocol's tensor key (`inputs`; V1
    `instances` or `inputs`). Anything else is left to the protocol's decoder and its errors.
    """
    if isinstance(doc, list):
        return bool(doc) and all(isinstance(item, dict) for item in doc)
    return isinstance(doc, dict) and not any(key in doc for key in _PROTOCOL_KEYS[protocol])
