#!/usr/bin/env bash
# `make test`: the same set-up as `make run` (without starting Vireo), then the whole suite:
# lint, the unit tests on SQLite, then everything (unit, integration on the real libvirtd, browser)
# on PostgreSQL when it answers (else SQLite). Nothing real is skipped: missing parts fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh test
scripts/ensure-libvirtd.sh
scripts/ensure-redis.sh
scripts/setup-python.sh test
export PATH="$PWD/.venv/bin:$PATH"
python manage.py collectstatic --noinput -v0

ruff check .
command -v chromium >/dev/null || { echo "chromium is missing: browser tests cannot run" >&2; exit 1; }

pg_url="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/vireo}"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { command -v pg_ctlcluster >/dev/null && \
     pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>/dev/null && sleep 2 && \
     pg_isready -q -h 127.0.0.1 -p 5432; }; then
  main_db="$pg_url"
else
  echo "PostgreSQL does not answer on 127.0.0.1:5432: running the whole suite on SQLite only."
  main_db=""
fi

status=0
if [[ -n "$main_db" ]]; then
  echo "== unit tests on SQLite"
  DATABASE_URL="sqlite:///$PWD/data/test-sqlite.sqlite3" python -m pytest -m "not integration and not browser" \
    -q -p no:cacheprovider "$@" || status=$?
  echo "== the whole suite on PostgreSQL"
  DATABASE_URL="$main_db" python -m pytest -q -p no:cacheprovider "$@" || status=$?
else
  python -m pytest -q -p no:cacheprovider "$@" || status=$?
fi
exit $status
