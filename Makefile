# Quick start: `make train` (set up, then train the default digits run) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU := torch==2.13.0
# CUDA build check: torch with CUDA plus the machine's nvcc (no GPU needed to compile)
TORCH_CUDA := torch==2.14.1
CUDA_HOME ?= /usr/local/cuda
TORCH_CUDA_ARCH_LIST ?= 9.0
PLUGINS := $(wildcard plugins/*/pyproject.toml)
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cuda/*.cu)

.PHONY: train test bench cuda-build classifier clean

train: $(VENV)/.installed
	$(VENV)/bin/rlgan train

test: $(VENV)/.installed
	$(PY) -m pytest

# CPU benchmarks (slow: the eager fallback at the large shapes takes seconds per call); the
# tables land in benchmarks/results/tables.md, from which BENCHMARKS.md quotes.
bench: $(VENV)/.installed
	$(PY) -m pytest benchmarks -p no:cacheprovider --ignore=benchmarks/test_seqgan_step.py \
		--benchmark-json=benchmarks/results/cpu.json
	$(PY) -m pytest benchmarks/test_seqgan_step.py -p no:cacheprovider --benchmark-json=benchmarks/results/cpu_seqgan.json
	$(PY) benchmarks/report.py benchmarks/results/*.json > benchmarks/results/tables.md

# Compile the CUDA kernels with a CUDA build of torch, to catch broken CUDA code without a GPU.
cuda-build: .venv-cuda/.installed
	rm -rf build/cuda-check
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" RLGAN_FORCE_CUDA=1 MAX_JOBS=2 \
		.venv-cuda/bin/python setup.py -q build_ext --build-temp build/cuda-check/tmp --build-lib build/cuda-check/lib
	@ls build/cuda-check/lib/rlgan_core/_C*.so && echo "CUDA build: ok"

classifier: $(VENV)/.installed
	$(PY) scripts/train_digits_classifier.py

$(VENV)/.installed: $(SOURCES) $(PLUGINS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH_CPU)
	$(PIP) install -q ninja pybind11
	$(PIP) install -q --no-build-isolation -e ".[test]"
	for plugin in $(dir $(PLUGINS)); do $(PIP) install -q --no-build-isolation $$plugin || exit 1; done
	touch $@

.venv-cuda/.installed:
	test -x .venv-cuda/bin/python || $(PYTHON) -m venv .venv-cuda
	.venv-cuda/bin/python -m pip install -q $(TORCH_CUDA) ninja pybind11 setuptools wheel
	touch $@

clean:
	rm -rf build rlgan_core/_C*.so .pytest_cache .benchmarks
