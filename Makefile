# formcheck — two commands: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
PYTEST_ARGS ?=
VENV_FLAGS ?=

.PHONY: demo test web web-deps web-lint browser lint typecheck unit integration reliability pi bench soak bench-latency model system-deps server-deps test-system-deps venv edge-install lock bench-pi evaluate train clean help

help:
	@echo "make demo   - run an edge node on a sample clip against a local broker and show what it publishes"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make bench  - edge benchmark: pose alone vs full pipeline, fps ratio and peak memory"
	@echo "make soak   - 10 stations at 30 frames/s for 10 minutes through the whole stack (MINUTES=10): nothing lost, memory flat"
	@echo "make bench-pi - the emulated Raspberry Pi's per-frame decisions vs this machine's (BOARD=pi4|pi5)"
	@echo "make bench-latency - rep latency, capture -> MQTT and -> InfluxDB, p50/p95/p99 at 10 stations x 30 fps"
	@echo "make evaluate - rep counting, leave one source out, per-clip table and totals (models/REPORT_reps.md)"
	@echo "make train  - retrain the classifiers and rewrite their held-out reports (installs the [train] extra; EXERCISE=lunge for one)"
	@echo "make edge-install - a Raspberry Pi (or any edge box): .venv from the hash-locked requirements/edge.txt + pose model"
	@echo "make pi     - only the emulated Raspberry Pi tests (pytest -m pi; part of make test)"
	@echo "make web    - bundle the member, station and wall pages into web/dist (npm ci from web/package-lock.json)"
	@echo "make browser - only the browser tests (pytest -m browser; part of make test)"
	@echo "make lock   - regenerate the hash-locked requirements/{edge,aggregator,dev}.txt (Linux x86-64 and aarch64, Python 3.11-3.12)"

system-deps:
	@$(PYTHON) deploy/python_check.py
	@bash deploy/system-packages.sh base

# The broker and the database: the demo, the tests and the benchmarks run them; an edge node never does.
server-deps:
	@bash deploy/system-packages.sh server

# Only the test suite needs these (the emulated Raspberry Pi: qemu-user and an arm64 Debian root).
test-system-deps:
	@bash deploy/system-packages.sh test

# The member and station pages (web/): npm packages exactly as web/package-lock.json says, bundled into web/dist,
# which Mosquitto serves (http_dir). Node.js and npm from Debian when missing.
web-deps:
	@bash deploy/system-packages.sh web

web/node_modules/.package-lock.json: web/package-lock.json
	@cd web && npm ci --no-audit --no-fund --loglevel=error

web/dist/index.html: web/node_modules/.package-lock.json web/build.mjs $(wildcard web/src/*)
	@cd web && npm run -s build

web: web-deps web/dist/index.html

web-lint: web
	cd web && npm run -s lint

# Only the browser tests (pytest -m browser; part of make test).
browser: venv server-deps test-system-deps model web
	$(PY) -m pytest -m browser -q $(PYTEST_ARGS)

# Everything the test suite needs (base + edge + aggregator + dashboards + dev), hash-checked from the lock, then
# this project alone, editable, without resolving.
$(STAMPS)/venv: pyproject.toml requirements/dev.txt
	@mkdir -p $(STAMPS)
	@$(PYTHON) deploy/python_check.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: system-deps $(STAMPS)/venv

model: venv
	@$(PY) -m formcheck.cli models build

lint: venv web
	$(PY) -m ruff check .
	cd web && npm run -s lint

typecheck: venv
	$(PY) -m mypy

# Pure logic only: no data set, no broker, no database (markers applied in tests/conftest.py).
unit: venv
	$(PY) -m pytest tests/unit -q -m "not (data or broker or influx or slow)" $(PYTEST_ARGS)

# Four workers on two cores: most of the suite waits on brokers, databases, browsers and timeouts, not on the CPU
# (measured warm: 11 min 49 s with 2 workers, 6 min 32 s with 4; docs/performance.md). Work stealing hands each
# worker a contiguous run of tests (a module's fixtures start once, not on every worker) and lets an idle worker
# take half of a busy one's rest (fresh clone, frames cached: pytest 7 min 47 s -> 5 min 31 s).
TEST_WORKERS ?= 4
TEST_DIST ?= worksteal
test: venv server-deps test-system-deps model web lint typecheck
	$(PY) -m pytest -n $(TEST_WORKERS) --dist $(TEST_DIST) -q $(PYTEST_ARGS)

pi: venv server-deps test-system-deps model
	$(PY) -m pytest -m pi -n 2 -q $(PYTEST_ARGS)

# An edge node only: the hash-locked runtime set, the project without its dev tools, the pose model.
# No Debian packages (a node runs no broker or database); Picamera2 users see docs/raspberry-pi.md.
# As root (sudo make edge-install on a Pi) the pose model goes to /var/lib/formcheck/models, which the systemd
# unit reads (FORMCHECK_MODELS_DIR); otherwise to the user's cache (runtime/formcheck_runtime/paths.py).
EDGE_MODELS_DIR ?= $(if $(filter 0,$(shell id -u)),/var/lib/formcheck/models)
edge-install:
	@$(PYTHON) deploy/python_check.py
	@bash deploy/system-packages.sh base
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/edge.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@$(if $(EDGE_MODELS_DIR),FORMCHECK_MODELS_DIR=$(EDGE_MODELS_DIR) )$(PY) -m formcheck.cli models build

# One hash-locked set per deployable (docs/architecture.md, "Install units"). uv keeps the versions already in an
# output file unless pyproject.toml asks otherwise (UPGRADE=--upgrade to move them all).
UPGRADE ?=
LOCK_CMD = $(PY) -m uv pip compile pyproject.toml --universal --generate-hashes --no-annotate $(UPGRADE) \
	-c requirements/edge-constraints.txt --custom-compile-command "make lock"
lock: venv
	$(LOCK_CMD) --extra edge -o requirements/edge.txt
	$(LOCK_CMD) --extra aggregator -o requirements/aggregator.txt
	$(LOCK_CMD) --extra edge --extra aggregator --extra dashboards --extra dev -o requirements/dev.txt

demo: venv server-deps model web
	@$(PY) -m formcheck.cli demo

bench: venv server-deps model
	$(PY) -m bench.edge_bench

MINUTES ?= 10
soak: venv server-deps
	$(PY) -m bench.soak --minutes $(MINUTES)

bench-latency: venv server-deps
	$(PY) -m bench.latency_bench

# Decisions on an emulated Raspberry Pi vs this machine, frame by frame (about 30 min per board).
BOARD ?= pi4
bench-pi: venv server-deps test-system-deps model
	$(PY) -m bench.pi_parity --board $(BOARD)

# Rep counting, leave one source out: settings chosen without each held-out source (models/REPORT_reps.md).
# No TensorFlow: the counter reads the edge's frame messages (computed once per clip and cached).
evaluate: venv model
	$(PY) -m formcheck.cli models evaluate-reps

# Training gets its own venv: when TensorFlow is importable, `import mediapipe`
# loads it too (+500 MB resident), which an edge node must never pay for.
TRAIN_VENV ?= .venv-train
$(STAMPS)/train-venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	@$(TRAIN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,train]'
	@touch $@

# EXERCISE=lunge (or squat, pushup, curl) retrains and re-evaluates that classifier only.
EXERCISE ?= all
train: system-deps model $(STAMPS)/train-venv
	$(TRAIN_VENV)/bin/python -m formcheck.cli models train --exercise $(EXERCISE)
	$(TRAIN_VENV)/bin/python -m formcheck.cli models evaluate --exercise $(EXERCISE)

clean:
	rm -rf $(VENV) $(STAMPS) .mypy_cache .ruff_cache .pytest_cache *.egg-info web/node_modules web/dist web/screenshots
