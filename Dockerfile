# The nstarx runtime image: `nstarx serve` as a KServe custom runtime, so models, pipelines and
# adaptive batching run on a cluster as they do on the laptop. Build (README, "Runtime image"):
#   docker build -t ghcr.io/nstarx/nstarx-jupyter:$(python -c 'import nstarx_jupyter as n; print(n.__version__)') .
# The tag is the image `nstarx_jupyter.deployment.kserve.DEFAULT_IMAGE` puts in the manifests and
# deploy/kserve/clusterservingruntime.yaml names. KServe starts it with that runtime's `args`
# (`serve --model_name=NAME --model_dir=/mnt/models --http_port=8080 --grpc_port=8081 ...`);
# its storage initializer downloads the InferenceService's `storageUri` into /mnt/models.

ARG PYTHON_VERSION=3.12

# 1. The wheel: the hatch build hook compiles the gRPC stubs (grpcio-tools) and builds the lab
#    extension's and the widgets' JavaScript with npm, which only this stage needs.
FROM python:${PYTHON_VERSION}-slim AS wheel
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

# 2. The runtime: the wheel with the extras of every model format the runtime advertises
#    (sklearn is in the base install). A smaller image for some formats only:
#    --build-arg EXTRAS=xgboost,lightgbm,onnx,mlflow
FROM python:${PYTHON_VERSION}-slim
ARG EXTRAS=xgboost,lightgbm,onnx,torch,tensorflow,mlflow
COPY --from=wheel /dist/ /tmp/dist/
RUN wheel="$(ls /tmp/dist/nstarx_jupyter-*.whl)" \
    && pip install --no-cache-dir "${wheel}[${EXTRAS}]" \
    && rm -rf /tmp/dist
# KServe's runtimes run as a non-root user; the server keeps its audit log under $NSTARX_HOME.
RUN useradd --uid 1000 --create-home nstarx
USER 1000
ENV NSTARX_HOME=/home/nstarx/.nstarx \
    PYTHONUNBUFFERED=1
EXPOSE 8080 8081
ENTRYPOINT ["nstarx"]
# What the ClusterServingRuntime passes (its args replace this), for `docker run` with a model
# folder mounted at /mnt/models.
CMD ["serve", "--model_name=model", "--model_dir=/mnt/models", "--host=0.0.0.0", \
     "--http_port=8080", "--grpc_port=8081", "--no-auth"]
