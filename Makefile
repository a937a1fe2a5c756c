# Every target sets itself up on a fresh clone: .venv is created and filled on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-extended lint fmt bench clean soak-rebalance

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,train]'
	$(BIN)/pip install --quiet --no-deps recbole==1.2.1  # ml-100k files only; its deps would swap torch
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/coldstream demo

# Two pytest workers (pytest-xdist), each with its own broker; a module's tests stay on one
# worker, so module fixtures are built once. One pytest process left the 2 cores idle 63 % of
# the time (most tests wait on brokers, workers and timeouts). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra --durations=25 -n $(TEST_WORKERS) --dist loadscope

# Variants of paths `make test` already drives end to end (e.g. an A/B test rolled back
# rather than promoted): a few minutes.
test-extended: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m extended

# Each rebalance scenario alone, then 20 gauntlets in a row (kill -9 storm,
# join/leave, paused heartbeat): ~1 h on 2 cores.
soak-rebalance: $(STAMP)
	COLDSTREAM_REBALANCE_REPEAT=$${REPEAT:-20} $(BIN)/python -m pytest -x -v -m soak \
		tests/streams/test_rebalance.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check streams encoders training tests

bench: $(STAMP)
	$(BIN)/coldstream bench --quick

clean:
	rm -rf $(VENV) build .coldstream *.egg-info
