# Two commands do everything on a fresh machine:
#   make demo   - set up, then run the whole pipeline on the built-in sample spread
#   make test   - set up, then lint, run the whole test suite (on a virtual display) and check
#                 that the wheel and the sdist install and run
# make lock regenerates requirements/lock-py*.txt from pyproject.toml and requirements/pins.txt.
VENV := .venv

.PHONY: setup demo test lint lock package
setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(VENV)/bin/ruff check src tests validation scripts benchmarks
	$(VENV)/bin/python -m pytest
	@bash scripts/check_package.sh

lint: setup
	$(VENV)/bin/ruff check src tests validation scripts benchmarks

lock:
	@bash scripts/lock.sh

package: setup
	@bash scripts/check_package.sh
