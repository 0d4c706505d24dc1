# formcheck — two commands: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit integration reliability bench soak bench-latency model system-deps venv train clean help

help:
	@echo "make demo   - run an edge node on a sample clip against a local broker and show what it publishes"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make bench  - edge benchmark: pose alone vs full pipeline, fps ratio and peak memory"
	@echo "make soak   - 10 stations at 30 frames/s for 10 minutes through the whole stack (MINUTES=10): nothing lost, memory flat"
	@echo "make bench-latency - rep latency, capture -> MQTT and -> InfluxDB, p50/p95/p99 at 10 stations x 30 fps"
	@echo "make train  - retrain the classifiers and rewrite their held-out reports (installs the [train] extra)"

system-deps:
	@bash deploy/system-packages.sh

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "formcheck needs Python 3.11+")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: system-deps $(STAMPS)/venv

model: venv
	@$(PY) -m formcheck.cli models build

lint: venv
	$(PY) -m ruff check .

typecheck: venv
	$(PY) -m mypy

unit: venv
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test: venv model lint typecheck
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

demo: venv model
	@$(PY) -m formcheck.cli demo

bench: venv model
	$(PY) -m bench.edge_bench

MINUTES ?= 10
soak: venv
	$(PY) -m bench.soak --minutes $(MINUTES)

bench-latency: venv
	$(PY) -m bench.latency_bench

# Training gets its own venv: when TensorFlow is importable, `import mediapipe`
# loads it too (+500 MB resident), which an edge node must never pay for.
TRAIN_VENV ?= .venv-train
$(STAMPS)/train-venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	@$(TRAIN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,train]'
	@touch $@

train: system-deps model $(STAMPS)/train-venv
	$(TRAIN_VENV)/bin/python -m formcheck.cli models train
	$(TRAIN_VENV)/bin/python -m formcheck.cli models evaluate

clean:
	rm -rf $(VENV) $(STAMPS) .mypy_cache .ruff_cache .pytest_cache *.egg-info
