# Vireo: `make run` starts it on its embedded defaults, `make test` runs the whole test suite.
.PHONY: run test lint schema

run:
	@scripts/run.sh

test:
	@scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

# Regenerate the committed OpenAPI schema (docs/openapi.yaml) after changing the API; a test compares them.
schema:
	DATABASE_URL=sqlite:///:memory: .venv/bin/python manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml
