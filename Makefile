# moe-run — build, test and benchmark on Debian 12 with the Swift toolchain.
#   make run     install missing system packages, build, run the quickstart experiment
#   make test    install, build, run every test (Swift and Python interop)
#   make bench   sgemm and training-step throughput against numpy, written to docs/benchmarks.md

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

APT_PACKAGES := libhdf5-dev hdf5-tools libopenblas-dev libyaml-dev pkg-config
VENV ?= $(HOME)/.cache/moe-run/venv
PY := $(VENV)/bin/python
PY_PACKAGES := numpy h5py
# One release build serves the binaries and the tests (-enable-testing keeps @testable imports working).
SWIFT_FLAGS := -c release -Xswiftc -enable-testing
BIN := .build/release
NPROC := $(shell nproc)

# OpenBLAS 0.3.21 misdetects recent Intel CPUs and falls back to its slowest kernel; it reads
# OPENBLAS_CORETYPE when it loads. The moe-run binaries re-exec themselves with it set; the test
# runner is started with it here. A value already in the environment always wins.
CORETYPE := $(shell if grep -qw avx512bw /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo; then echo SkylakeX; elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then echo Haswell; fi)
ifneq ($(CORETYPE),)
export OPENBLAS_CORETYPE ?= $(CORETYPE)
endif

.PHONY: all setup venv build test bench run clean

all: build

## setup: install the Debian packages that are missing (apt-get as root, else sudo).
setup:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "setup: system packages present"; exit 0; fi; \
	echo "setup: installing$$missing"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "setup: error: missing Debian packages:$$missing; run 'sudo apt-get install$$missing' (no root and no password-less sudo here)" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing

## venv: the Python environment for interop tests and the numpy reference (outside the clone).
venv:
	@if ! [ -x "$(PY)" ] || ! "$(PY)" -c "import numpy, h5py" 2>/dev/null; then \
	  echo "venv: creating $(VENV) with $(PY_PACKAGES)"; \
	  python3 -m venv "$(VENV)"; \
	  "$(VENV)/bin/pip" install -q --disable-pip-version-check $(PY_PACKAGES); \
	fi

build: setup
	swift build $(SWIFT_FLAGS)

test: setup venv
	swift build $(SWIFT_FLAGS) --build-tests
	MOE_RUN_PYTHON="$(PY)" swift test $(SWIFT_FLAGS) --skip-build --disable-swift-testing

bench: build venv
	@mkdir -p .build
	env -u OPENBLAS_CORETYPE MOE_RUN_BLAS_CONFIGURED=1 OPENBLAS_NUM_THREADS=$(NPROC) $(BIN)/moe-bench --sgemm-only --json > .build/bench-default-kernel.json
	OPENBLAS_NUM_THREADS=$(NPROC) $(BIN)/moe-bench --python "$(PY)" --rounds 3 --torch "$(HOME)/.cache/moe-run/torch-venv/bin/python" --default-kernel .build/bench-default-kernel.json --markdown docs/benchmarks.md

clean:
	rm -rf .build

## run: the quickstart experiment (rerunning reuses the complete run: --resume).
run: build
	$(BIN)/moe-run experiments/quickstart.yaml --resume
