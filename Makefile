# HematoVision: `make course` runs the whole course, `make test` runs every test.
# Both create .venv and install what they need on first use (Python 3.10+ and make suffice).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install course test test-fast lab demo exercises grade benchmark benchmark-labs cross-validate figure clean

help:
	@echo "make course     run the seven notebooks in order (executed copies in build/course/)"
	@echo "make test       run the whole test suite"
	@echo "make test-fast  the tests that build no model, run no notebook and drive no browser (under a minute)"
	@echo "make lab        JupyterLab on the notebooks"
	@echo "make demo       the classify widget as a web page (Voila on 127.0.0.1)"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make grade SUBMISSIONS=folder  run and score students' exercise notebooks (table + build/grades.csv)"
	@echo "make benchmark  kit recipe vs tutorial recipe on the full data (ARGS=--quick: a few minutes;"
	@echo "                ARGS=--readme: keep the figures in benchmarks/, the tables in README and model card)"
	@echo "make benchmark-labs  Kaggle-only against both-labs training, scored on both labs (docs/second-lab.md)"
	@echo "make cross-validate  the recipe over every TRAIN cell, 5 folds by cell; resumes where it stopped"
	@echo "                (ARGS=\"--image-size 160\": another input size; ARGS=\"--only 1,2\": only those folds)"
	@echo "make figure     the README's picture (docs/images/cells.png) from the course's model"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

course: $(STAMP)
	$(PY) -m hematolib course $(ARGS)

test: $(STAMP)
	$(PY) -m pytest --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not real_data and not browser and not model"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# The most one upload (all its files) may send from the demo page to Python, in bytes: Voila's
# websocket limit (above it tornado drops the connection and the page goes dead), told to the
# widget too, whose page refuses a larger upload with a message. tests/test_browser.py reads it.
DEMO_MESSAGE_LIMIT := 67108864
demo: $(STAMP)
	HEMATO_MESSAGE_LIMIT=$(DEMO_MESSAGE_LIMIT) $(VENV)/bin/voila app/classify.ipynb --no-browser \
		--Voila.ip=127.0.0.1 --port=8866 \
		"--Voila.tornado_settings={'websocket_max_message_size': $(DEMO_MESSAGE_LIMIT)}"

benchmark: $(STAMP)
	$(PY) benchmarks/benchmark.py $(ARGS)

benchmark-labs: $(STAMP)
	$(PY) benchmarks/second_lab.py $(ARGS)

cross-validate: $(STAMP)
	$(PY) benchmarks/cross_validate.py $(ARGS)

figure: $(STAMP)
	$(PY) tools/make_figure.py

exercises: $(STAMP)
	$(PY) tools/make_exercises.py

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [ARGS='--timeout 300 --out grades.csv']"; exit 2; }
	$(PY) -m hematolib grade "$(SUBMISSIONS)" $(ARGS)

clean:
	rm -rf build .pytest_cache
