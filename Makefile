# Two commands for a newcomer: `make demo` and `make test`.
# Both install whatever is missing first (Debian packages, .venv, the project).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Independent peers the tests check our output with, and the OCR engine.
# chromium: the review app and the audit report are tested in a real browser.
# orthanc: a real PACS for `mricurate pull` and `push` (the tests start their own).
APT_PACKAGES := dicom3tools dcm2niix dcmtk tesseract-ocr ismrmrd-tools bart postgresql chromium orthanc

.PHONY: demo test install system-packages lint typecheck bench clean

demo: install
	$(BIN)/mricurate demo

# Two workers (CI has two cores); the Prefect tests share one worker and one server.
test: install
	$(BIN)/pytest -n 2 --dist loadgroup

install: system-packages $(STAMP)

system-packages:
	@# policy-rc.d (exit 101) keeps a package's service from starting as it is installed:
	@# Orthanc's would listen on 4242 and 8042 on every interface.
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  policy=""; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null && \
	    $$SUDO chmod 755 /usr/sbin/policy-rc.d && policy=1; \
	  fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	  status=$$?; \
	  if [ -n "$$policy" ]; then $$SUDO rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check pipeline flows mricurate tests bench scripts
	$(BIN)/ruff format --check pipeline flows mricurate tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

# Peers the benchmarks measure against (not needed by the tests).
BENCH_APT_PACKAGES := libgdcm-tools

bench: install
	@missing=""; for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/deid.py
	$(BIN)/python bench/runner.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
