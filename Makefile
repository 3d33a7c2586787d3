# rldf-pipeline: every target installs what it needs into a local virtualenv first.
PYTHON ?= python3
VENV   ?= .venv
# torch==2.13.0 from the configured index (PyPI's Linux wheel is the CUDA build; our CI machines have a CPU build on
# disk). CPU only: TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu". On a CUDA cluster, e.g.:
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= runs/demo
# make wheelhouse: by default for the lent GPU node (NODE: its packages and versions, left out and checked; its Python
# and platform; no Ray, which cluster=inline does without; at most 40 MiB). NODE= PY_VERSION= PLATFORM= for this
# machine's profile; HAVE adds packages the node has. docs/cluster.md, "An offline GPU node".
NODE       ?= constraints/lent-node.txt
HAVE       ?=
PY_VERSION ?= 3.12
PLATFORM   ?= manylinux_2_28_x86_64
RAY        ?= 0
MAX_MB     ?= 40
# make gpu-check: the venv's Python where there is one, else the node's own (an offline node installs into it)
CHECK_PY   ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
GPU_OUT    ?= runs/gpu-check.jsonl

.PHONY: setup demo demo-clean test test-full test-gpu search clone metrics metrics-baseline bench gpu-check wheelhouse eval eval-quick clean help

help:
	@echo "make setup   install into $(VENV) (TORCH='$(TORCH)')"
	@echo "make demo    run the main job on the embedded shapes world"
	@echo "make test    the fast tests (no Ray started, nothing trained; a few minutes)"
	@echo "make test-full  every test, the end-to-end Ray runs, kills and resumes included (what CI runs)"
	@echo "make test-gpu   the GPU tier (needs CUDA)"
	@echo "make bench   benchmarks; make eval (eval-quick): clone quality per method -> docs/results.md"
	@echo "make wheelhouse  wheels for an offline node (HAVE=, PY_VERSION=, PLATFORM=, RAY=0); make gpu-check  the staged GPU check"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: clone all 10 shapes-world classes on a local Ray
# (conf/experiment/shapes_demo.yaml says how). Re-running resumes (nothing left to do finishes in seconds); `make demo-clean` starts over.
demo: $(STAMP)
	$(PY) scripts/clone.py experiment=shapes_demo paths.output_dir=$(OUT)
	$(PY) scripts/contact_sheet.py $(OUT) $(OUT)/contact_sheet.png
	@echo "demo shards: $(OUT)/shard-*.tar  (manifest: $(OUT)/manifest.json, log: $(OUT)/clone.log, contact sheet: $(OUT)/contact_sheet.png)"

demo-clean:
	rm -rf $(OUT)

search: $(STAMP)
	$(PY) scripts/search.py $(ARGS)

clone: $(STAMP)
	$(PY) scripts/clone.py $(ARGS)

# Score the demo clone against the shapes world's real validation split.
metrics: $(STAMP)
	$(PY) scripts/metrics.py synthetic=$(OUT) real=shapes:val paths.output_dir=$(OUT)-metrics $(ARGS)

# The floor: two disjoint real splits scored against each other, same extractor and sample size.
metrics-baseline: $(STAMP)
	$(PY) scripts/metrics.py synthetic=shapes:train real=shapes:val paths.output_dir=runs/metrics-baseline $(ARGS)

# Tests run a test file per core at a time (pytest-xdist; the longest files start first: tests/conftest.py), on the
# cores this process may use (at most 8: each test process holds its own models and Ray).
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))')
PYTEST  = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The fast tier: unit and in-process tests; the end-to-end tests that start Ray or train are marked slow.
test: $(STAMP)
	$(PYTEST) -m "not slow and not gpu" tests

# Every test (what CI runs; the GPU tier skips without CUDA).
test-full: $(STAMP)
	$(PYTEST) tests

# The GPU tier alone (tests/test_gpu.py), on a machine with CUDA: with the venv's Python where there is one, else the
# node's own (an offline node has installed the wheelhouse into it; no venv is made)
test-gpu:
	$(CHECK_PY) -m pytest -q -p no:cacheprovider -m gpu tests

# Benchmarks (ratios measured side by side; several minutes on 2 cores).
bench: $(STAMP)
	$(PY) scripts/bench.py --out runs/bench.json --markdown docs/results.md $(ARGS)

# Wheels for an offline node (docs/cluster.md): make wheelhouse HAVE="torch transformers ..." PY_VERSION=3.12 RAY=0
wheelhouse: $(STAMP)
	$(PY) scripts/wheelhouse.py --out wheelhouse --have "$(HAVE)" --ray $(RAY) $(if $(NODE),--node $(NODE)) $(if $(MAX_MB),--max-mb $(MAX_MB)) \
	    $(if $(PY_VERSION),--python-version $(PY_VERSION)) $(if $(PLATFORM),--platform "$(PLATFORM)")

# The staged GPU check (pipeline/bench/gpu.py): one JSON line per stage, appended to $(GPU_OUT) as it ends. Needs no
# setup here: on an offline node, install the wheelhouse first. ARGS="--gpu-scale tiny" runs it on the CPU.
gpu-check:
	$(CHECK_PY) scripts/bench.py --only gpu --out $(GPU_OUT) $(ARGS)

# Clone quality per method (class name, random, RLDF Q-learning, noisy gradient): FD/KID/P/R/D/C and CAS
# against real data. Full run: 200 images per class, writes docs/results.md; resumes when re-run.
eval: $(STAMP)
	$(PY) scripts/evaluate.py $(ARGS)

# A quick look (20 images per class, smaller budgets; under 10 minutes on 2 cores): runs/eval-quick/results.md
eval-quick: $(STAMP)
	$(PY) scripts/evaluate.py --quick $(ARGS)

clean:
	rm -rf $(VENV) runs outputs .pytest_cache
