# Two commands: `make demo` (the two-stream recipe on the synthetic corpus, resumable) and `make test`. Both
# bootstrap .venv on first use (idempotent).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.py | cksum | cut -d' ' -f1)
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

demo: $(STAMP)
	$(PY) main.py --mode recipe --config configs/recipe_synthetic.py --workdir $(WORKDIR)

clean:
	rm -rf $(VENV) workdirs
