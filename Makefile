# Two commands matter: `make demo` runs the main job, `make test` runs every check.
# Both create .venv on first use and are fast when it is already set up. `make demo` installs
# abflow with its runtime dependencies only; `make test` adds the dev extras (Feast, selenium,
# mypy, schemathesis, ...), which the demo never needs. With uv on the PATH, uv installs
# (several times faster); otherwise pip. Both print what they install as they go.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell cksum < pyproject.toml | cut -d' ' -f1)
RUNTIME_STAMP := $(VENV)/.runtime-$(HASH)
DEV_STAMP     := $(VENV)/.dev-$(HASH)
UV     := $(shell command -v uv 2>/dev/null)

ifneq ($(UV),)
MAKE_VENV := $(UV) venv --seed --python $(PYTHON) $(VENV)
INSTALL   := $(UV) pip install --python $(BIN)/python
else
MAKE_VENV := $(PYTHON) -m venv $(VENV)
# --no-compile: byte-compiling every installed module (all of MLflow, SciPy, pandas) cost
# 40 s of CPU; Python compiles the modules a command imports, once, when it first runs.
INSTALL   := $(BIN)/python -m pip install --progress-bar on --no-compile
endif

# The tests start Python often (the CLI, gateways and their workers, MLflow's scoring server):
# with PYTHONDONTWRITEBYTECODE set (as in many CI images) every one of them compiled MLflow,
# pandas and SciPy from source again, a third of test_cli_exit_codes.py's CPU time. The test
# targets let Python keep its bytecode (__pycache__, ignored by git).
# The tests run in TEST_WORKERS processes (pytest-xdist; 0 runs them in this one): most of the
# suite's time is spent waiting on the servers, brokers and subprocesses it starts, so two
# workers on two cores finish in well under the time of one. Every test keeps its own files,
# ports and PostgreSQL schema, so the workers never share state.
# PYTEST_ARGS adds pytest options, e.g. make test PYTEST_ARGS="-x -k analysis".
TEST_WORKERS ?= 2
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

.PHONY: demo test test-fast check format lint types pytest bench clean install install-runtime

$(RUNTIME_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "abflow needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(MAKE_VENV)
	@echo "installing abflow and its runtime dependencies into $(VENV) ($(if $(UV),uv,pip))"
	$(INSTALL) -e .
	@rm -f $(VENV)/.runtime-* $(VENV)/.installed-*
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	@echo "installing the test tools (dev extras) into $(VENV) ($(if $(UV),uv,pip))"
	$(INSTALL) -e '.[dev]'
	$(INSTALL) --no-deps 'gbstats==0.8.0'
	@rm -f $(VENV)/.dev-*
	@touch $@

install-runtime: $(RUNTIME_STAMP)

install: $(DEV_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/abflow demo

test: $(DEV_STAMP)
	$(MAKE) check

# Everything but the tests marked slow (fuzzing, subprocess fleets): for the edit-test loop.
# make test and .ci/run always run the whole suite.
test-fast: $(DEV_STAMP)
	$(PYTEST) -q -m "not slow"

check: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(PYTEST) -q --durations=25

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(DEV_STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .abflow .mypy_cache .ruff_cache .pytest_cache
