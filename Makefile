# spdf-kit: every target sets up its own virtualenv (.venv) from requirements.lock on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY ?= PASSIVE
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
PRESET ?= tiny
WORKERS ?=
# pytest processes for `make test`: one per core (at most 4; each imports torch), a test file's tests in one process
# (a notebook's cells share a kernel). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto

.PHONY: venv reproduce test lint lab bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

## The README's first command: every figure of the tiny preset (FLOP tables, SPDF, Primer, exams, report).
reproduce: $(STAMP)
	$(BIN)/spdf reproduce --preset $(PRESET) $(if $(WORKERS),--workers $(WORKERS))

## The README's second command: lint, unit tests, and every notebook under nbval with its smoke parameters
## (pytest-xdist: the test files spread over the cores).
test: $(STAMP)
	$(BIN)/ruff check spdf_lib tests bench notebooks
	SPDF_RUNS_DIR=$$(mktemp -d) $(BIN)/pytest tests notebooks --nbval-lax -p no:cacheprovider \
		-n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements-bench.lock | sha1sum | cut -c1-12)

$(BENCH_STAMP): $(STAMP) requirements-bench.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-bench.lock
	@rm -f $(VENV)/.bench-* && touch $@

## Benchmarks: each speed claim measured side by side with its baseline, printed as ratios.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) runs .pytest_cache
