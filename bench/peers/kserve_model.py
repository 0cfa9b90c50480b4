"""KServe's Python model server (`kserve.Model`) serving a joblib file, as the bench peer."""

from __future__ import annotations

import argparse
import inspect
import uuid

import joblib
import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse


class SklearnModel(kserve.Model):
    """KServe's sklearn server in a few lines: V1 instances and V2 infer requests."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.model = None

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            x = payload.inputs[0].as_numpy()
            result = self.model.predict(x)
            output = InferOutput(name="output-0", shape=list(result.shape), datatype="INT64",
                                 data=result)  # fmt: skip
            return InferResponse(model_name=self.name, infer_outputs=[output],
                                 response_id=payload.id or str(uuid.uuid4()))  # fmt: skip
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH")
    args = parser.parse_args()
    models = []
    for spec in args.model:
        name, path = spec.split("=", 1)
        model = SklearnModel(name, path)
        model.load()
        models.append(model)
    options = {"http_port": args.http_port, "grpc_port": args.grpc_port, "workers": 1}
    accepted = inspect.signature(kserve.ModelServer).parameters
    if "enable_latency_logging" in accepted:
        options["enable_latency_logging"] = False
    if "enable_docs_url" in accepted:
        options["enable_docs_url"] = False
    kserve.ModelServer(**options).start(models)


if __name__ == "__main__":
    main()
