# moe-run — build, test and benchmark on Debian 12 with the Swift toolchain.
#   make run     install missing system packages, build, run the quickstart experiment
#   make test    install, build, run every test (Swift, Python interop, PyTorch reference check)
#   make check-torch   only the MoE layer against an independent PyTorch reference
#   make bench   sgemm and training-step throughput against numpy, written to docs/benchmarks.md
#   make bench-checkpoints   wall time with default checkpoints against none, only that section of docs/benchmarks.md
#   make bench-attention   causal self-attention against PyTorch SDPA, only that section of docs/benchmarks.md
#   make bench-cache  the task cache's sweep timing (BASELINE= an older moe-run binary), only that section of docs/benchmarks.md
#   make bench-comm   all-reduce latency/bandwidth: shm backend, Open MPI vader and TCP, only that section of docs/benchmarks.md
#   make scaling      docs/scaling.md: the alpha-beta scaling model from the figures in docs/benchmarks.md
#   make sweep   a parameter sweep and its report (SPEC=, GRID="key=a,b key2=c,d", JOBS=)
#   make check-golden   rerun the shipped experiments, compare their weights bit for bit (UPDATE=1 rewrites)
#   make install build, then copy moe-run to $(PREFIX)/bin (PREFIX=/usr/local; DESTDIR for staging)
#   make uninstall   remove $(PREFIX)/bin/moe-run

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# librsvg2-bin (rsvg-convert) and libxml2-utils (xmllint): the report tests render and parse the SVG plots.
# libopenmpi-dev and openmpi-bin (mpirun): the MPI backend (MoEMPI) and its multi-rank tests.
APT_PACKAGES := libhdf5-dev hdf5-tools libopenblas-dev libyaml-dev pkg-config librsvg2-bin libxml2-utils libopenmpi-dev openmpi-bin
VENV ?= $(HOME)/.cache/moe-run/venv
PY := $(VENV)/bin/python
PY_PACKAGES := numpy h5py
# The CPU the code is compiled for: Swift's default is baseline x86-64 (SSE2), which leaves the
# vectorisable kernels (GELU/SiLU, AdamW, reductions) 2-3x slower than AVX2/AVX-512 allow. Chosen
# from /proc/cpuinfo like OPENBLAS_CORETYPE below; override with `make TARGET_CPU=x86-64` (portable).
TARGET_CPU ?= $(shell if grep -qw avx512bw /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo; then echo skylake-avx512; elif grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then echo haswell; else echo x86-64; fi)
# One release build serves the binaries and the tests (-enable-testing keeps @testable imports working).
SWIFT_FLAGS := -c release -Xswiftc -enable-testing -Xswiftc -target-cpu -Xswiftc $(TARGET_CPU)
BIN := .build/release
# The moe-run users run (make run, sweep, install, check-golden and the benches) is linked with the
# Swift runtime and Foundation inside it (--static-swift-stdlib, its own scratch path): every process
# then starts in ~11 ms instead of ~17 ms (the dynamic loader no longer binds ~33,000 symbols of a
# dozen Swift libraries), and a run starts one process per task, a sweep one more per trial.
# The tests use the dynamic build in $(BIN): XCTest has no static build.
APP ?= .build/static/release
NPROC := $(shell nproc)

# The PyTorch reference check of the MoE layer (Tests/TorchReferenceTests + Tests/python/torch_reference.py).
# torch from PyPI is large (about 5 GB with its CUDA wheels, about two minutes to install), so it
# gets its own venv outside the clone, installed once per machine and reused by every clone and CI.
# MOE_RUN_SKIP_TORCH=1 leaves it out of `make test` (the test then reports itself skipped).
TORCH_VENV ?= $(HOME)/.cache/moe-run/torch-venv
TORCH_PY := $(TORCH_VENV)/bin/python
TORCH_PY_PACKAGES := torch numpy h5py
# Free space (GiB) the first install needs where the venv goes.
TORCH_MIN_FREE_GB := 8
# `make test` runs the reference check when torch can be installed: if the install fails (no disk,
# no registry), the suite still runs and the check reports itself skipped, saying why.

# OpenBLAS 0.3.21 misdetects recent Intel CPUs and falls back to its slowest kernel; it reads
# OPENBLAS_CORETYPE when it loads. The moe-run binaries re-exec themselves with it set; the test
# runner is started with it here. A value already in the environment always wins.
CORETYPE := $(shell if grep -qw avx512bw /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo; then echo SkylakeX; elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then echo Haswell; fi)
ifneq ($(CORETYPE),)
export OPENBLAS_CORETYPE ?= $(CORETYPE)
endif

.PHONY: all setup venv build app test bench bench-checkpoints bench-cache bench-attention bench-comm scaling run clean sweep install uninstall check-golden

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

build: setup app
	swift build $(SWIFT_FLAGS)

## app: only the moe-run users run ($(APP)/moe-run, Swift runtime linked in).
app: setup
	swift build $(SWIFT_FLAGS) --static-swift-stdlib --scratch-path .build/static --product moe-run

test: setup venv
	swift build $(SWIFT_FLAGS) --build-tests
	@if [ "$(MOE_RUN_SKIP_TORCH)" = 1 ]; then torch_env="MOE_RUN_SKIP_TORCH=1"; \
	elif $(MAKE) --no-print-directory torch-venv; then torch_env="MOE_RUN_TORCH_PYTHON=$(TORCH_PY)"; \
	else echo "make test: WARNING: torch could not be installed (see above); the PyTorch reference check is skipped"; \
	  torch_env="MOE_RUN_SKIP_TORCH=1"; fi; \
	echo "swift test $(SWIFT_FLAGS) --skip-build --disable-swift-testing ($$torch_env)"; \
	env MOE_RUN_PYTHON="$(PY)" $$torch_env swift test $(SWIFT_FLAGS) --skip-build --disable-swift-testing --skip LMStudyEndToEndTests

## test-shipped: the shipped LM study specs (lm-btm, lm-btm-average, lm-btx, lm-switch, lm-seed-recipe,
##   sweep-lm-fusion) run as written but shortened, their HDF5 checked and every fused tensor
##   recomputed by numpy (LMStudyEndToEndTests: about 20 CPU-minutes, so not part of `make test`).
.PHONY: test-shipped
test-shipped: setup venv
	swift build $(SWIFT_FLAGS) --build-tests
	env MOE_RUN_PYTHON="$(PY)" swift test $(SWIFT_FLAGS) --skip-build --disable-swift-testing --filter LMStudyEndToEndTests

.PHONY: torch-venv check-torch

## torch-venv: PyTorch (+ numpy, h5py) in $(TORCH_VENV), once per machine; a no-op when it imports.
## Concurrent `make test`s (several clones) wait on a lock instead of installing into one venv twice.
torch-venv:
	@ready() { [ -x "$(TORCH_PY)" ] && "$(TORCH_PY)" -c "import torch, h5py, numpy" 2>/dev/null; }; \
	if ! ready; then \
	  mkdir -p "$(dir $(TORCH_VENV))"; \
	  exec 9>"$(TORCH_VENV).lock"; flock 9; \
	fi; \
	if ! ready; then \
	  free=$$(( $$(df -Pk "$(dir $(TORCH_VENV))" | awk 'NR==2 {print $$4}') / 1048576 )); \
	  if [ "$$free" -lt $(TORCH_MIN_FREE_GB) ]; then \
	    echo "torch-venv: error: $$free GiB free under $(dir $(TORCH_VENV)), torch needs about $(TORCH_MIN_FREE_GB); free some space, set TORCH_VENV=DIR elsewhere, or MOE_RUN_SKIP_TORCH=1 to test without the PyTorch reference check" >&2; \
	    exit 1; \
	  fi; \
	  echo "torch-venv: installing $(TORCH_PY_PACKAGES) into $(TORCH_VENV) (once per machine: about 5 GB, a few minutes)"; \
	  start=$$(date +%s); \
	  [ -x "$(TORCH_PY)" ] || python3 -m venv "$(TORCH_VENV)"; \
	  if ! "$(TORCH_VENV)/bin/pip" install -q --disable-pip-version-check --no-cache-dir $(TORCH_PY_PACKAGES) || ! ready; then \
	    echo "torch-venv: error: pip could not install $(TORCH_PY_PACKAGES) into $(TORCH_VENV); set MOE_RUN_SKIP_TORCH=1 to test without the PyTorch reference check" >&2; \
	    exit 1; \
	  fi; \
	  echo "torch-venv: installed in $$(( $$(date +%s) - start )) s"; \
	fi; \
	echo "torch-venv: $(TORCH_VENV) has torch $$("$(TORCH_PY)" -c 'import torch; print(torch.__version__)')"

## check-torch: build, then run only the PyTorch reference check of the MoE layer.
check-torch: setup torch-venv
	swift build $(SWIFT_FLAGS) --build-tests
	env -u MOE_RUN_SKIP_TORCH MOE_RUN_TORCH_PYTHON="$(TORCH_PY)" swift test $(SWIFT_FLAGS) --skip-build --disable-swift-testing --filter TorchReferenceTests

## bench-attention: only the causal self-attention comparison with PyTorch, rewriting only its section of docs/benchmarks.md.
bench-attention: build
	OPENBLAS_NUM_THREADS=$(NPROC) $(BIN)/moe-bench --attention-only --rounds 3 --torch "$(HOME)/.cache/moe-run/torch-venv/bin/python" --markdown docs/benchmarks.md

## bench-checkpoints: only the wall time of digits-dense, moe-topk and lm-dense with default checkpoints against none
## (also part of `make bench`), rewriting only the "## Checkpoints" section of docs/benchmarks.md.
bench-checkpoints: build
	MOE_BENCH_MOE_RUN=$(APP)/moe-run $(BIN)/moe-bench --checkpoints-only --rounds 3 --markdown docs/benchmarks.md

## bench-cache: only the task cache's sweep timing (experiments/sweep-fusion.yaml with the cache, with --no-cache and,
## given BASELINE=path/to/an/older/moe-run, with that binary; --jobs 1 and 2; a few minutes), rewriting only the
## "## Task cache (sweep-fusion)" section of docs/benchmarks.md.
bench-cache: build
	MOE_BENCH_MOE_RUN=$(APP)/moe-run $(BIN)/moe-bench --cache-only --rounds 3 $(if $(BASELINE),--baseline "$(BASELINE)" $(if $(BASELINE_LABEL),--baseline-label "$(BASELINE_LABEL)")) --markdown docs/benchmarks.md

## bench-comm: only the all-reduce comparison (2 ranks, 4 KiB to 64 MiB: our shm backend, MPICommunicator under
## mpirun over vader and TCP loopback, Open MPI's MPI_Allreduce as the yardstick) and its α–β fits, rewriting only
## the "## Collectives" section of docs/benchmarks.md, plus the data-parallel step (2 and 4 ranks: shm, mpirun vader,
## mpirun TCP) split into compute, communication and waiting, and the same split for lm-dense's model trained
## data-parallel on 2 ranks ("## Data-parallel language model"; alone: moe-bench --lm-comm-only --markdown docs/benchmarks.md)
## (a few minutes; run it on a quiet machine: MPI ranks poll).
bench-comm: build
	$(BIN)/moe-bench --comm-only --markdown docs/benchmarks.md

## scaling: docs/scaling.md, the alpha-beta scaling model (2 ... 256 ranks, 1/10/100 Gb/s) computed from the figures
## in docs/benchmarks.md (no measuring; `make bench-comm scaling` remeasures the collectives and data-parallel steps first).
scaling: build
	$(BIN)/moe-bench --scaling --from docs/benchmarks.md --markdown docs/scaling.md

## bench: measure and write docs/benchmarks.md: sgemm against numpy, the MLP training step, scheduler
## scaling, fusion, the MoE layer and the transformer LMs' training step (lm-dense, lm-moe) against
## PyTorch eager ($(TORCH_PY); `make torch-venv`), same threads, same run (about 10 minutes on 2 cores;
## run it on a quiet machine). `moe-bench --lm-only --torch PYTHON` repeats only the LM comparison.
bench: build venv
	@mkdir -p .build
	env -u OPENBLAS_CORETYPE MOE_RUN_BLAS_CONFIGURED=1 OPENBLAS_NUM_THREADS=$(NPROC) $(BIN)/moe-bench --sgemm-only --json > .build/bench-default-kernel.json
	MOE_BENCH_MOE_RUN=$(APP)/moe-run OPENBLAS_NUM_THREADS=$(NPROC) $(BIN)/moe-bench --python "$(PY)" --rounds 3 --torch "$(TORCH_PY)" --default-kernel .build/bench-default-kernel.json --markdown docs/benchmarks.md

clean:
	rm -rf .build

## run: the quickstart experiment (rerunning reuses the complete run: --resume).
run: app
	$(APP)/moe-run experiments/quickstart.yaml --resume

## sweep: a parameter sweep, then its report (tables + SVG plots in <sweep dir>/report/index.html).
##   make sweep                                   the default: router k × experts (6 trials, a few minutes on 2 cores)
##   make sweep SPEC=experiments/sweep-capacity.yaml
##   make sweep SPEC=experiments/moe-topk.yaml GRID="router.k=1,2 experts=4,8" JOBS=2
## Rerunning skips every complete trial (resume is the default for sweeps). SWEEP_ARGS passes more
## options (--random N --seed S, --set k=v, --out DIR, --fail-fast, --skip-invalid).
SPEC ?= experiments/sweep-router.yaml
GRID ?=
JOBS ?= $(NPROC)
SWEEP_ARGS ?=
sweep: app
	@dir=$$($(APP)/moe-run sweep $(SPEC) $(foreach g,$(GRID),--grid $(g)) --jobs $(JOBS) $(SWEEP_ARGS) | tee /dev/stderr | tail -n 1); \
	$(APP)/moe-run report "$$dir"

## install: build the static moe-run (make app), then copy it to $(DESTDIR)$(PREFIX)/bin, so `moe-run …` works from
## any directory. The binary is self-contained on this machine: its workers are re-execs of
## /proc/self/exe (no sibling files), the Swift runtime and Foundation are linked into it
## (--static-swift-stdlib), and HDF5/OpenBLAS/libyaml/Open MPI are the system libraries `make setup` installs.
## `make -o app install` installs the binary already built without rebuilding it (the tests do, with APP=.build/release).
PREFIX ?= /usr/local
DESTDIR ?=
install: app
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 755 "$(APP)/moe-run" "$(DESTDIR)$(PREFIX)/bin/moe-run"
	@echo "install: $(DESTDIR)$(PREFIX)/bin/moe-run"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "install: note: $(PREFIX)/bin is not on PATH; add it (export PATH=\"$(PREFIX)/bin:\$$PATH\")";; esac

## uninstall: remove what `make install` put there.
uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/moe-run"

## check-golden: rerun every shipped experiment (experiments/*.yaml; chosen trials of the sweeps; the
## lm-* language models shortened to 100 steps, SHORTENED in Tests/golden/check_golden.py) into a
## temporary folder and compare the weights of every model each run links (final, seed, expert-<i>,
## fused, ...) bit for bit with Tests/golden/weights.tsv; prints the tensors that moved, fails if any did.
##   make check-golden                       compare (3-4 minutes on the 2-core dev machine)
##   make check-golden ONLY=btx-mix,upcycle  a subset
##   make check-golden UPDATE=1              rewrite the list (only for a commit that moves bits on purpose, and says so)
##   make check-golden KEEP=/tmp/golden      keep the run directories
ONLY ?=
UPDATE ?=
KEEP ?=
check-golden: app venv
	MOE_RUN_TARGET_CPU=$(TARGET_CPU) $(PY) Tests/golden/check_golden.py --moe-run $(APP)/moe-run \
	  $(if $(ONLY),--only $(ONLY)) $(if $(filter 1 yes true,$(UPDATE)),--update) $(if $(KEEP),--keep $(KEEP))

## lm-study: README's "What works on real text": every LM recipe at lm-dense's 1,536,000 training
##   tokens (experiments/lm-*.yaml), for each seed of SEEDS (default 0 1 2; about 10-20 CPU minutes
##   per run on an idle core, hours in all), then the table (printed) and the figures
##   (docs/images/lm-study-*.png) from the runs' HDF5 files (Tests/python/lm_study.py, h5py + numpy).
##   Complete runs are reused (--resume), so an interrupted study continues where it stopped.
LM_STUDY := lm-dense lm-moe lm-switch lm-upcycle lm-btm lm-btm-average lm-btx lm-seed-recipe
SEEDS ?= 0 1 2
.PHONY: lm-study
lm-study: app venv
	for seed in $(SEEDS); do for spec in $(LM_STUDY); do \
	  $(APP)/moe-run experiments/$$spec.yaml --set seed=$$seed --resume --quiet; done; done
	$(PY) Tests/python/lm_study.py results --seeds $(shell echo $(SEEDS) | tr ' ' ',') --images docs/images
	for f in lm-study-bpb lm-btx-router-load; do rsvg-convert docs/images/$$f.svg -o docs/images/$$f.png && rm docs/images/$$f.svg; done

## router-study: README's "Router balance on real text" (issue 16): the sweeps
##   experiments/lm-router-balance.yaml (softmax|sigmoid x aux_loss|bias, 3 seeds) and
##   lm-router-shared.yaml (loss-free + shared expert + fine-grained experts, 3 seeds), 15 runs of
##   lm-moe's size, 2 at a time, complete trials reused (--resume); then the table (printed) and
##   docs/images/router-balance-violation.png (Tests/python/router_study.py, h5py + numpy).
.PHONY: router-study
router-study: app venv
	for spec in lm-router-balance lm-router-shared; do \
	  $(APP)/moe-run sweep experiments/$$spec.yaml --jobs 2 --resume --quiet || exit 1; done
	$(PY) Tests/python/router_study.py results --images docs/images
	rsvg-convert docs/images/router-balance-violation.svg -o docs/images/router-balance-violation.png && rm docs/images/router-balance-violation.svg

## corpus: rebuild experiments/data/text-domains.h5 from pinned Debian packages (downloads them;
##   refuses a version or text sha256 that differs from the pins). Not part of `make test`.
.PHONY: corpus
corpus: venv
	MOE_RUN_PYTHON=$(PY) experiments/data/build_text_domains.sh experiments/data/text-domains.h5
