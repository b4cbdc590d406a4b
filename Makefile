# The two set-up commands (see README): `make demo` and `make test`.
# Each creates or updates the project's own virtual environment, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synthmr-installed
DEMO ?= demo

.PHONY: demo test benchmark clean

# Reinstall when the project's requirements change; torch and friends come pinned from constraints.txt.
# The extras: train (phantom, training, evaluation: what the demo needs) and test; plain synthmr is inference only.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,test]'
	touch $@

demo: $(STAMP)
	$(PY) -m synthmr phantom brain --n 2 --dims 3 --out $(DEMO)/brain --preview --overwrite
	$(PY) -m synthmr phantom breast --n 4 --dims 2 --out $(DEMO)/breast --preview --overwrite
	$(PY) -m synthmr phantom liver --n 4 --dims 2 --out $(DEMO)/liver --preview --overwrite
	$(PY) -m synthmr demo breast_dce_pre2post --out $(DEMO)/breast_dce_pre2post --overwrite
	@echo "demo written to $(DEMO)/: open $(DEMO)/*/preview.png and $(DEMO)/breast_dce_pre2post/demo.png"

test: $(STAMP)
	$(PY) -m pytest -q

benchmark: $(STAMP)
	$(PY) benchmarks/phantom.py
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/breast_dce_pre2post.py
	$(PY) benchmarks/precision.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/generate.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
