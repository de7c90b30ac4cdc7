# Every target sets up .venv first; `make run` and `make test` are the whole quick start.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facecast-installed
# insightface ships the sample group photo the demo and tests use (see README: OpenCV).
SAMPLES = $(shell $(BIN)/python -c 'import importlib.util as u, pathlib as p; print(p.Path(next(iter(u.find_spec("insightface").submodule_search_locations))) / "data" / "images")')

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps 'insightface>=0.7.3,<3'
	touch $(STAMP)

run: setup
	$(BIN)/facecast swap --face clips/examples/astronaut.jpg --target $(SAMPLES)/t1.jpg -o out/swap.png

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core bots facecast

bench: setup
	$(BIN)/python benchmarks/swap_bench.py

clean:
	rm -rf $(VENV) out benchmarks/out .mypy_cache .ruff_cache .pytest_cache
