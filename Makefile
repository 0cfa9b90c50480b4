# Human entry point; `make check` runs exactly what .ci/run runs.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
EXTRAS ?= dev,xgboost,lightgbm,onnx,torch,tensorflow,mlflow,notebook,kserve,parquet,explain,export
# What the notebooks need (`make lab`, `make demo`): widgets and live charts, and the registry;
# the quickstart imports nothing else (scikit-learn is a core dependency). 04-kserve also wants
# `kserve`, 05-monitoring's explanations `explain`: make lab LAB_EXTRAS=notebook,mlflow,kserve,explain
LAB_EXTRAS ?= notebook,mlflow
comma := ,
# pip runs again only when pyproject.toml changes (or other extras are asked for).
LAB_STAMP := $(VENV)/.installed-$(subst $(comma),-,$(LAB_EXTRAS))
# The CPU build of torch that these machines keep on disk; a bare `torch` pulls a CUDA build.
TORCH_PIN ?= torch==2.13.0
S3_VENV ?= $(HOME)/.cache/nstarx-s3
S3_SERVER := $(S3_VENV)/bin/moto_server
# jupyter lab refuses to start as root without --allow-root (containers, CI images).
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

.DEFAULT_GOAL := help
.PHONY: help install demo lab lab-dev serve check lint format typecheck imports test test-unit bench screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `make install` (and `make check`, which needs it) runs pip again only when what the install
# builds from changed: pyproject, the build hook, the gRPC proto, the front ends' sources (the
# editable install builds the stubs and the JavaScript), or the extras asked for.
INSTALL_STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
INSTALL_INPUTS := pyproject.toml hatch_build.py nstarx_jupyter/protocol/grpc/inference.proto \
	package.json package-lock.json install.json widgets/build.mjs widgets/package.json \
	labextension/build.mjs labextension/package.json \
	$(shell find widgets/src labextension/src labextension/style -type f 2>/dev/null)

install: $(INSTALL_STAMP) ## install the package with every extra and the dev tools into .venv (again only when its inputs changed)

$(INSTALL_STAMP): $(INSTALL_INPUTS) | $(PY) $(S3_SERVER)
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(if $(filter-out $(subst $(comma), ,$(EXTRAS)),$(subst $(comma), ,$(LAB_EXTRAS))),,touch $(LAB_STAMP))
	touch $@

$(LAB_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[$(LAB_EXTRAS)]"
	touch $@

# The upload tests' S3-compatible server (moto's), in its own venv: its botocore pins
# python-dateutil<3, which the kubernetes client refuses (tests/support/s3.py).
$(S3_SERVER):
	python3 -m venv $(S3_VENV)
	$(S3_VENV)/bin/pip install --quiet "moto[server]>=5,<6"

demo: $(LAB_STAMP) ## the quickstart headless, in its own home: train, deploy with a key, predict, load test, redeploy
	$(BIN)/nstarx demo

lab: $(LAB_STAMP) ## install what the notebooks need (LAB_EXTRAS), open JupyterLab on the quickstart
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/01-quickstart.ipynb

lab-dev: install ## serve the lab extension from its build folder (rebuild: npm run build:prod)
	rm -rf $(VENV)/share/jupyter/labextensions/nstarx-jupyter
	ln -s $(CURDIR)/nstarx_jupyter/labextension $(VENV)/share/jupyter/labextensions/nstarx-jupyter

check: install lint typecheck imports test ## what CI runs: lint, types, layers, all tests

# loadgroup: the tests marked xdist_group("mlflow") run in one worker, which alone imports MLflow
# and migrates its first store, those marked "tensorflow" in one that alone imports TensorFlow;
# schemathesis's plugin (1 CPU s per process) is for tests/integration
test-unit: ## the unit tests only (in process, no servers; under a minute)
	$(BIN)/pytest -n 2 --dist loadgroup -p no:schemathesis tests/unit -q || [ $$? -eq 5 ]

lint: ## ruff lint and format check; schemas fresh; tsc, eslint and prettier on both front ends
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) -m nstarx_jupyter.pipelines.schema --check
	$(PY) -m nstarx_jupyter.labapi.schema --check
	$(PY) -m nstarx_jupyter.serving.control_schema --check
	[ -d node_modules ] || npm ci
	npm run --silent typecheck && npm run --silent lint

format: ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: ## mypy strict on the package and the tests
	$(BIN)/mypy

imports: ## import-linter: the layers of ARCHITECTURE.md section 4
	$(BIN)/lint-imports

test: ## the front ends' unit tests (vitest), then pytest: unit, integration, UI, notebooks (exit 5, "no tests", is not a failure)
	[ -d node_modules ] || npm ci
	npm run --silent test
	$(BIN)/pytest -n 2 --dist loadgroup -m "not alone" || [ $$? -eq 5 ]
	$(BIN)/pytest -n 0 -m alone || [ $$? -eq 5 ]

screenshots: install ## run the UI tests and copy the README's screenshots into docs/
	$(BIN)/pytest tests/ui -n 0
	mkdir -p docs
	cp test-output/ui/sidebar-default-width.png docs/sidebar.png
	cp test-output/ui/flow-first-display.png docs/flow-editor.png
	cp test-output/ui/latency-chart.png docs/latency-chart.png
	cp test-output/ui/drift-chart.png docs/drift-chart.png
	cp test-output/ui/sidebar-drift.png docs/sidebar-drift.png

bench: ## benchmarks against KServe and MLServer (about 40 minutes; see bench/README.md)
	$(PY) bench/run.py

clean: ## remove build outputs and caches
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache nstarx_jupyter/protocol/grpc/*_pb2*
	rm -rf nstarx_jupyter/notebook/static nstarx_jupyter/labextension labextension/lib
