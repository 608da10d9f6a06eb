# The few commands a newcomer needs. Everything runs from the repo's .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-pg15 stress fuzz lint format bench clean-db

install:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -e '.[test]'

demo:
	$(VENV)/bin/goalrt demo

test:
	$(VENV)/bin/pytest

test-pg15:
	GOALRT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres $(VENV)/bin/pytest

stress:
	GOALRT_STRESS_SECONDS=300 $(VENV)/bin/pytest -m stress

fuzz:
	GOALRT_FUZZ_ITERATIONS=2000 $(VENV)/bin/pytest --timeout=0 tests/integration/test_json_fuzz.py

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy && $(PY) tools/async_to_sync.py --check

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench:
	$(PY) bench/append_bench.py
	$(PY) bench/state_bench.py --quick
	$(PY) bench/goals_bench.py --quick
	$(PY) bench/hotpath_bench.py
	$(PY) bench/planning_bench.py --quick
	$(PY) bench/cli_bench.py --quick
	$(PY) bench/scale_bench.py --quick

clean-db:
	$(VENV)/bin/goalrt db stop; rm -rf .goalrt
