# Two commands for a newcomer: `make dev` (set up, build the model, serve the API locally)
# and `make test` (set up, build the model, run every check). Everything else is a step of those.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 3000
EVENT ?= events/api-rest-predict-multipart.json
PYTEST_ARGS ?=
# make test runs in two passes: pytest-xdist on every core (WORKERS; a module per worker, so its
# fixtures are built once) for what bounds no time, then the tests marked serial (CPU-time, wall-time
# and cost bounds: the decode sandbox, hostile inputs, the cost gate), alone. make check is the first
# pass over the fast tier. Exit status 5 (nothing selected) is fine for a pass PYTEST_ARGS narrowed away.
# One worker more than cores: with two on 2 cores, 1.55 of them were busy (the rest of the time
# they waited on subprocesses, servers and the browser); a third fills that time.
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# The fast tier waits on nothing: one worker per core (a third made it slower, 62 s against 55 s).
CHECK_WORKERS ?= auto
FAST := not slow and not browser and not network and not aws_shape
# cdk context for synth/diff/deploy/destroy, e.g. CONTEXT="-c apiType=http -c enableWaf=false"
# (every key: the settings reference in docs/).
CONTEXT ?=
# Which stacks (default: the app's one stack), e.g. STACKS=ImageRecognitionGithubDeploy.
STACKS ?=
# Benchmarks and reports write to build/bench/; WRITE_DOCS=1 updates the tracked docs/reports/ files instead.
WRITE_DOCS ?=
DOCS_FLAG = $(if $(filter 1 yes true,$(WRITE_DOCS)),--write-docs)

# The ImageNet export (make model), and the model directory served (MODEL_DIR: that export unless
# you pass your own, e.g. make dev MODEL_DIR=build/models/skin-lesions; the image and layers put it
# at /opt/model).
IMAGENET_DIR := $(CURDIR)/build/model
export MODEL_DIR ?= $(IMAGENET_DIR)
# Keras' download cache. Offline machines seed it from ../shared/models (same file names Keras
# caches), so the unmodified MobileNetV2(weights="imagenet") loads without a network.
export KERAS_HOME ?= $(CURDIR)/build/keras-home
SHARED ?= $(abspath $(CURDIR)/../shared)
KERAS_FILES := mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5 imagenet_class_index.json
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE ?= 1
# The CDK CLI and jsii run offline and quietly: no telemetry, no notices, no Node 20 banner.
export CDK_DISABLE_CLI_TELEMETRY ?= true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20
CDK := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" node_modules/.bin/cdk --no-notices

# What is pinned by hand (requirements.txt) and what is installed (requirements.lock: every
# dependency pinned, with hashes; `make lock` regenerates them with uv).
REQUIREMENTS := layers/runtime/requirements.txt layers/model/requirements.txt infra/requirements.txt smoke/requirements.txt tests/requirements.txt

FORCE:

.PHONY: FORCE lock base-digests check train evaluate train-examples bench bench-backfill bench-recipes bench-train bench-capture rollout-demo backfill-demo smoke fuzz hostile layers load help setup browser keras-cache model dev test lint format invoke predict events clean s3-demo synth \
	bootstrap diff deploy destroy

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: tests/requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r tests/requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lock: $(VENV)/.installed ## regenerate every requirements.lock (pins + hashes, all platforms) from the requirements.txt files
	@for req in $(REQUIREMENTS); do \
	  py=$$(case $$req in layers/*) echo 3.12;; *) echo 3.11;; esac); \
	  $(VENV)/bin/uv pip compile "$$req" --generate-hashes --universal --python-version $$py \
	    --quiet --no-header -o "$${req%.txt}.lock" && echo "$${req%.txt}.lock (Python $$py+)"; done

base-digests: setup ## pin the Dockerfile's base images: resolve their digests (Docker) into layers/base-images.json
	$(PY) -m layers.base_images

setup: $(VENV)/.installed node_modules/.installed ## install pinned Python (.venv) and CDK CLI (node_modules) deps

browser: ## Debian's Chromium for the page tests (apt-get, as root or with sudo)
	@command -v chromium >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $$sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
	@chromium --version

keras-cache: ## link ../shared/models into $KERAS_HOME/models when present (offline machines)
	@mkdir -p "$(KERAS_HOME)/models"
	@if [ -d "$(SHARED)/models" ]; then \
	  for f in $(KERAS_FILES); do ln -sf "$(SHARED)/models/$$f" "$(KERAS_HOME)/models/$$f"; done; \
	  echo "Keras cache $(KERAS_HOME)/models seeded from $(SHARED)/models"; \
	else echo "No $(SHARED)/models: Keras will download the weights into $(KERAS_HOME)/models"; fi

$(IMAGENET_DIR)/manifest.json: $(VENV)/.installed layers/model/export.py layers/model/manifest_writer.py training/imagenet.py handler/recognition/manifest.py training/cost.py $(if $(QUANTIZE)$(CALIBRATE),FORCE)
	$(MAKE) --no-print-directory keras-cache
	$(PY) -m training.imagenet --out "$(IMAGENET_DIR)" $(if $(QUANTIZE),--quantize $(QUANTIZE)) $(if $(CALIBRATE),--calibration-data "$(CALIBRATE)")

# The check set of the pre-traffic quality gate: the shared photos, recorded with the export.
$(IMAGENET_DIR)/check/check.json: $(IMAGENET_DIR)/manifest.json training/checkset.py handler/recognition/imaging.py handler/recognition/model.py
	$(PY) -m devtools check-set "$(IMAGENET_DIR)" --source "../shared/images (the ImageNet export's)" \
	  --photo "$(SHARED)/images/grace_hopper.jpg=military_uniform" --photo "$(SHARED)/images/cat.bmp=Egyptian_cat"

model: $(IMAGENET_DIR)/manifest.json $(IMAGENET_DIR)/check/check.json ## export MobileNetV2 (.keras + .tflite + labels + manifest + check set) to build/model; QUANTIZE=int8 adds int8

dev: model ## set up and serve the API on http://127.0.0.1:$PORT with the real model
	$(VENV)/bin/imgrec serve --port $(PORT) --s3

test: model keras-cache node_modules/.installed browser ## set up and run every check: ruff, then the whole pytest suite
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n $(WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -m serial $(PYTEST_ARGS) || [ $$? = 5 ]

check: setup model ## the fast tier for the inner loop (< 1 minute): ruff, then tests not marked slow/browser/network/aws_shape/serial (the serial ones, time bounds, run in make test)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(CHECK_WORKERS) --dist loadfile -m "$(FAST) and not serial" $(PYTEST_ARGS)

lint: setup ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup ## apply ruff's formatting and safe fixes
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

invoke: model ## run an event through its entry point: make invoke EVENT=events/api-rest-health.json
	$(VENV)/bin/imgrec invoke $(EVENT)

predict: model ## classify photos: make predict IMAGES="a.jpg b.png"
	$(VENV)/bin/imgrec predict $(or $(IMAGES),$(SHARED)/images/grace_hopper.jpg)

events: setup ## regenerate the events/ fixtures and events/expected.json
	$(PY) -m devtools.fixtures --out events

synth: setup model ## cdk synth offline into cdk.out (cdk-nag runs; no Docker needed); settings: CONTEXT="-c apiType=http -c enableWaf=false"
	$(CDK) synth --quiet $(CONTEXT) $(STACKS)

bootstrap: setup model ## once per account/region: cdk bootstrap (needs AWS credentials)
	$(CDK) bootstrap $(CONTEXT)

diff: setup model ## what a deploy would change in the account (needs AWS credentials); CONTEXT="-c ..." as for synth
	$(CDK) diff $(CONTEXT) $(STACKS)

deploy: setup model ## build the image (Docker) and deploy the stack (needs AWS credentials); CONTEXT="-c ..." as for synth
	$(CDK) deploy --require-approval broadening $(CONTEXT) $(STACKS)

destroy: setup model ## delete the stack (the buckets are retained: they hold your photos)
	$(CDK) destroy $(CONTEXT) $(STACKS)

clean: ## remove build outputs and caches (keeps .venv and node_modules)
	rm -rf build cdk.out test-output .pytest_cache .ruff_cache

s3-demo: model ## the S3 path locally: moto S3 on 127.0.0.1, upload photos (PHOTOS=folder), print results
	$(VENV)/bin/imgrec s3-demo $(or $(PHOTOS),$(SHARED)/images)

backfill-demo: model ## a stored archive (~2,750 objects) on moto S3 classified by imgrec backfill, then rerun (all skipped)
	$(PY) -m devtools.backfill_demo $(BACKFILL_ARGS)

train: model keras-cache ## your own classes: make train DATA=folder [NAME=name] [TRAIN_ARGS="--epochs 20 --quantize int8"] -> build/models/NAME (NAME: from the dataset)
	@test -n "$(DATA)" || { echo "usage: make train DATA=folder-with-one-subfolder-per-class [NAME=name]"; exit 2; }
	$(VENV)/bin/imgrec train "$(DATA)" $(if $(NAME),--name "$(NAME)" --out "build/models/$(NAME)") $(TRAIN_ARGS)

evaluate: model ## the serving classifier on labelled photos: make evaluate DATA=folder MODEL_DIR=build/models/NAME -> MODEL_DIR/evaluations/DATA-TIME/
	@test -n "$(DATA)" || { echo "usage: make evaluate DATA=folder-with-one-subfolder-per-class [MODEL_DIR=...]"; exit 2; }
	$(VENV)/bin/imgrec evaluate "$(DATA)" --model-dir "$(MODEL_DIR)"

train-examples: model keras-cache ## train both shared datasets with the documented settings: writes build/bench/models.md (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.models $(DOCS_FLAG) $(TRAIN_EXAMPLES_ARGS)

bench-recipes: model keras-cache ## the training recipes on both shared datasets' test splits (and ImageNet's zero-shot answer): writes build/bench/recipes.md (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.recipes $(DOCS_FLAG) $(RECIPES_ARGS)

bench-capture: model ## what capture costs an answer: p50/p99 of POST /predict with capture off and CAPTURE_RATE=1 (moto S3): writes build/bench/capture.md (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.capture $(DOCS_FLAG)

bench-train: model keras-cache ## training's peak memory (10,000 generated photos, the shared sets) and the feature cache's speed-up: writes build/bench/training.md (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.training $(DOCS_FLAG) $(BENCH_TRAIN_ARGS)

bench: model ## benchmark vs the tutorial's app: writes build/bench/benchmarks.md, .json and .png (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.run $(DOCS_FLAG) $(BENCH_ARGS)

smoke: setup ## the smoke suite against a running API: make smoke API_URL=https://…/prod/ (or http://127.0.0.1:3000/)
	@test -n "$(API_URL)" || { echo "usage: make smoke API_URL=https://…/prod/"; exit 2; }
	$(PY) -m pytest -q -p no:cacheprovider smoke --api-url "$(API_URL)"

bench-backfill: model ## bulk worker throughput per batch size and worker count: writes build/bench/scale.md (1 M / 10 M images: time, cost; WRITE_DOCS=1: docs/)
	$(PY) -m bench.backfill $(DOCS_FLAG) $(BENCH_BACKFILL_ARGS)

layers: model ## zip packaging without Docker: runtime + model layers and the code in build/layers
	$(PY) -m layers.build --out build/layers --python-version $(or $(LAMBDA_PYTHON),3.12) \
	  --architecture $(or $(ARCH),x86_64) --model-dir "$(MODEL_DIR)"

fuzz: model ## property-based fuzzing of the API handler: 10,000 examples
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/handler/http/test_fuzz.py --hypothesis-show-statistics

rollout-demo: model keras-cache ## what a rollout decides, without AWS: the pre-traffic gate on the good build, three broken ones and a slow one, the rollback alarm over a simulated canary
	$(PY) -m devtools rollout-demo

hostile: model ## every hostile input and misbehaving decoder through both event versions, each in a fresh function: time, whole-function memory; writes build/bench/reliability.md (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.hostile $(DOCS_FLAG) $(HOSTILE_ARGS)

load: model ## load and soak the local server (2,000 requests, 16 at a time): writes build/bench/reliability.md (WRITE_DOCS=1: docs/reports/)
	$(PY) -m bench.load $(DOCS_FLAG) $(LOAD_ARGS)
