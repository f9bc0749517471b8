# Each target creates .venv if missing and installs the package into it first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# glibc hands large freed blocks back to the OS and page-faults them in again: 1.2-5x on this code.
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736

.PHONY: demo test bench report wheel-check ci-bench ci-baseline clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bench run --methods gray,kmeans32 --dataset samples --recipe cpu

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Throughput ratios measured in one run, with the load of other processes beside each (~6 min on 2 cores).
bench: $(STAMP)
	mkdir -p results/benchmarks
	$(BIN)/python -m pytest benchmarks -q -s --benchmark-only --benchmark-json=results/benchmarks/latest.json

report: $(STAMP)
	$(BIN)/bench report

# Build the wheel, install it apart from the checkout and run `bench` from another folder (about 30 s).
wheel-check: $(STAMP)
	PY=$(BIN)/python .ci/wheel-check

# The CI benchmark (.ci/benchmark lists the methods): a short deterministic CPU run on `samples`, then
# `bench check` against results/baselines/ci-samples.json. ci-baseline rewrites that file on purpose.
ci-bench: $(STAMP)
	BENCH=$(BIN)/bench .ci/benchmark

ci-baseline: $(STAMP)
	BENCH=$(BIN)/bench .ci/benchmark --update
	$(BIN)/python .ci/readme_excerpt.py --write

clean:
	rm -rf $(VENV) results/train results/eval reports
