# Two commands: `make demo` (the two-stream recipe on the synthetic corpus, resumable) and `make test`. Both
# bootstrap .venv on first use (idempotent).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_SUM := $(shell cat setup.py | cksum | cut -d' ' -f1)
# Two install stamps: the package alone (what `make demo` needs) and with its test extras (PyTorch, pytest: ≈ 30 s
# more to install on a fresh machine, not needed by the demo).
STAMP := $(VENV)/.installed-$(SETUP_SUM)
TEST_STAMP := $(VENV)/.installed-test-$(SETUP_SUM)
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=

.PHONY: venv test demo bench clean

venv: $(TEST_STAMP)

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

test: $(TEST_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

demo: $(STAMP)
	$(PY) main.py --mode recipe --config configs/recipe_synthetic.py --workdir $(WORKDIR)

clean:
	rm -rf $(VENV) workdirs
