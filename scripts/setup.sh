#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: the Debian packages the proofs run
# (redis-server, redis-sentinel, redis-tools, prometheus + promtool, prometheus-redis-exporter)
# and a Python virtualenv in .venv with the pinned requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=0
for bin in redis-server redis-sentinel redis-cli redis-check-rdb prometheus promtool prometheus-redis-exporter; do
  command -v "$bin" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  echo "==> installing Debian packages (redis, sentinel, prometheus, promtool, redis_exporter)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    redis-server redis-sentinel redis-tools prometheus prometheus-redis-exporter python3-venv >/dev/null
fi
# The packages' own services are not used (the tests and the dev stack start their own
# processes on free loopback ports); stop them where an init system started them.
for svc in redis-server redis-sentinel prometheus prometheus-redis-exporter; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing Python requirements into .venv"
  # pip repeats a warning per package for local index folders some machines configure but
  # lack; keep the set-up output readable without hiding real errors.
  quiet_pip() { .venv/bin/pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }; }
  quiet_pip --upgrade pip
  quiet_pip -r requirements-dev.txt
  quiet_pip --no-deps -e .
  echo "$want" > "$stamp"
fi
