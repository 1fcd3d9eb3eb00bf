# The two commands of the README: `make demo` (the main job) and `make test`.
# Both create .venv and install the pinned stack from pyproject.toml when it is missing.
PY      ?= python3.11
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SUBMITTED ?= examples/submissions
OUT     ?= out/demo

.PHONY: all demo test lint venv sysdeps assets assets-check release release-check grade bench clean

all: test

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@echo "installing the pinned stack into $(VENV) (first time: about 2 minutes)"
	$(VPY) -m pip install --quiet --disable-pip-version-check \
	    $$($(VPY) tools/deps.py --dev)
	$(VPY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# bubblewrap, chromium and postgresql (apt-get as root; otherwise it says what to install)
sysdeps:
	@bash tools/sysdeps.sh

assets: $(STAMP)
	$(VPY) tools/regen_assets.py

assets-check: $(STAMP)
	$(VPY) tools/regen_assets.py --check

release: $(STAMP)
	$(VPY) tools/release.py

release-check: $(STAMP)
	$(VPY) tools/release.py --check

grade: $(STAMP) sysdeps
	$(VPY) tools/autograde.py $(SUBMITTED) --out $(OUT)

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

test: $(STAMP) sysdeps lint
	$(VPY) -m pytest -n 2 tests

# verifies every committed generated file (by content) and writes only under out/
demo: $(STAMP) sysdeps
	$(VPY) tools/regen_assets.py --check
	$(VPY) tools/release.py --check
	$(VPY) tools/figures.py --check
	$(VPY) tools/make_examples.py --check
	$(VPY) tools/autograde.py $(SUBMITTED) --out $(OUT) --force
	@echo "report: $(OUT)/report.html"

bench: $(STAMP)
	$(VPY) bench/bench_training.py

clean:
	rm -rf out .pytest_cache .ruff_cache gradebook.db
