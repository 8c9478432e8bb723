# Two commands do everything on a fresh machine:
#   make demo   - set up, then run the whole pipeline on the built-in sample spread
#   make test   - set up, then lint and run the whole test suite (on a virtual display)
VENV := .venv

.PHONY: setup demo test lint
setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(VENV)/bin/ruff check src tests validation scripts benchmarks
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests validation scripts benchmarks
