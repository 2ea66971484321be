#!/usr/bin/env bash
# Make sure a Redis answers at REDIS_URL (default the local one); start the local one if not.
set -euo pipefail
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if redis-cli -u "$url" ping >/dev/null 2>&1; then exit 0; fi
case "$url" in
  redis://127.0.0.1:*|redis://localhost:*)
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/vireo.log
    for _ in $(seq 1 50); do redis-cli -u "$url" ping >/dev/null 2>&1 && exit 0; sleep 0.2; done ;;
esac
echo "Redis does not answer at $url. Start it, or set REDIS_URL." >&2
exit 1
