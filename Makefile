# rldf-pipeline: every target installs what it needs into a local virtualenv first.
PYTHON ?= python3
VENV   ?= .venv
# CPU build by default (already on disk on our CI machines). On a CUDA cluster, e.g.:
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= runs/demo

.PHONY: setup demo test search clean help

help:
	@echo "make setup   install into $(VENV) (TORCH='$(TORCH)')"
	@echo "make demo    run the main job on the embedded shapes world"
	@echo "make test    run the test suite"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/search.py paths.output_dir=$(OUT)/search
	@echo "demo outputs: $(OUT)"

search: $(STAMP)
	$(PY) scripts/search.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs outputs .pytest_cache
