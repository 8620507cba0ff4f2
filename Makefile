# Two entry points (README): `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO_DIR ?= robusttest-demo
DATA ?= $(if $(ROBUSTTEST_DATA),$(ROBUSTTEST_DATA),../shared/data)

.PHONY: setup demo test lint bench replicate fixtures clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,dicom,zoo]"
	touch $@

# The main job, as a user would run it: pytest --model in an otherwise empty project.
demo: setup
	@mkdir -p $(DEMO_DIR)
	@printf '[pytest]\n' > $(DEMO_DIR)/pytest.ini
	cd $(DEMO_DIR) && ../$(BIN)/pytest --model=../fixtures/models/lungs_tinyunet.onnx \
		--robust-html report.html --robust-json results.json --junitxml junit.xml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 -q

# The paper replication: train the zoo (resumable), run the grid, write docs/replication.md.
replicate: setup
	$(BIN)/robusttest zoo train --data $(DATA)
	$(BIN)/robusttest zoo replicate --data $(DATA) --frontier

# Re-train the committed fixture models (seeded).
fixtures: setup
	$(BIN)/robusttest zoo fixtures --data $(DATA)

bench: setup
	$(BIN)/python -m pytest tests/benchmarks --benchmark-only -p no:xdist -q

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
