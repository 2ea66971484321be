#!/usr/bin/env bash
# `make run`: set everything up and start every Vireo process under honcho; Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh
scripts/ensure-libvirtd.sh
scripts/ensure-redis.sh
scripts/setup-python.sh
export PATH="$PWD/.venv/bin:$PATH"
python manage.py migrate --noinput -v0
python manage.py collectstatic --noinput -v0
boot=$(python manage.py vireo_bootstrap)
port="${PORT:-8000}"
bind="${VIREO_BIND:-127.0.0.1}"
echo
echo "  Vireo is starting at http://${bind/0.0.0.0/127.0.0.1}:${port}/"
if grep -q '^ADMIN_CREATED' <<<"$boot"; then
  read -r _ user password <<<"$(grep '^ADMIN_CREATED' <<<"$boot")"
  echo "  Log in as: ${user}   password: ${password}   (shown only this once)"
else
  read -r _ user <<<"$(grep '^ADMIN_EXISTS' <<<"$boot")"
  echo "  Log in as: ${user} (password printed at the first run; reset it with"
  echo "  .venv/bin/python manage.py changepassword ${user})"
fi
echo
export PORT="$port" VIREO_BIND="$bind"
exec honcho -f Procfile start
