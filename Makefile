# Every target sets up .venv first; `make run` and `make test` are the whole quick start.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facecast-installed
# insightface ships the sample group photo the demo and tests use (see README: OpenCV).
SAMPLES = $(shell $(BIN)/python -c 'import importlib.util as u, pathlib as p; print(p.Path(next(iter(u.find_spec("insightface").submodule_search_locations))) / "data" / "images")')

.PHONY: setup run demo test lint bench bundled-clips clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,telegram,discord,postgres,scale]'
	$(BIN)/python -m pip install --quiet --no-deps 'insightface>=0.7.3,<3'
	touch $(STAMP)

run: setup
	$(BIN)/facecast serve --host 127.0.0.1 --port 8080

demo: setup
	$(BIN)/facecast swap --face clips/examples/astronaut.jpg --target $(SAMPLES)/t1.jpg -o out/swap.png

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core bots facecast

bench: setup
	cd benchmarks && ../$(BIN)/python swap_bench.py
	cd benchmarks && ../$(BIN)/python render_bench.py
	cd benchmarks && ../$(BIN)/python meme_bench.py

# Rebuild the bundled clip packs from the public-domain examples (a developer task: the
# packs are committed). Each is made by the product's own `facecast clips add`.
NASA := --license "Public domain" --attribution "NASA" --source "NASA portrait of astronaut Eileen Collins, via scikit-image (skimage.data.astronaut)"
DRAWN := --license "Public domain" --attribution "NASA; redrawn by the FaceCast project" --source "NASA portrait of Eileen Collins, stylised by tools/make_examples.py"
ADD := FACECAST_CLIPS_DIR=clips $(BIN)/facecast clips add --replace
bundled-clips: setup
	$(BIN)/python tools/make_examples.py
	$(ADD) clips/examples/astronaut.jpg --id astronaut-push-in --title "Astronaut: slow push-in" --motion push-in --tags astronaut,space,zoom $(NASA)
	$(ADD) clips/examples/astronaut.jpg --id astronaut-pan --title "Astronaut: pan across" --motion pan --tags astronaut,space,pan $(NASA)
	$(ADD) clips/examples/astronaut.jpg --id astronaut-shake --title "Astronaut: earthquake" --motion shake --tags astronaut,space,shake,meme $(NASA)
	$(ADD) clips/examples/astronaut-drawn.jpg --id drawn-astronaut-sway --title "Drawn astronaut: sway" --motion sway --tags drawn,cartoon,astronaut $(DRAWN)

clean:
	rm -rf $(VENV) out benchmarks/out .mypy_cache .ruff_cache .pytest_cache
