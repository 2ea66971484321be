# Vireo: `make run` starts it on its embedded defaults, `make test` runs the whole test suite.
.PHONY: run test lint

run:
	@scripts/run.sh

test:
	@scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy
