#!/usr/bin/env bash
# The main job on the embedded default (Pulumi.dev.yaml): bring the dev stack up and
# smoke-test it. With the Pulumi CLI and Docker present this is `pulumi up` on the dev stack
# with a local state backend; otherwise the same files run as local processes on loopback.
#   bash scripts/dev.sh up [--mode auto|docker|processes] [--no-smoke] | down | status | env
# Set-up: the Python virtualenv always; the Debian packages only when the stack runs as local
# processes (the Docker mode needs none of them).
set -euo pipefail
cd "$(dirname "$0")/.."
# Set-up talks on stderr: stdout is the command's (`eval "$(bash scripts/dev.sh env)"`).
bash scripts/setup.sh --python >&2
cmd="${1:-up}"
if [ "$cmd" = up ]; then
  mode=auto
  prev=""
  for arg in "${@:2}"; do
    case "$arg" in --mode=*) mode="${arg#--mode=}" ;; esac
    if [ "$prev" = --mode ]; then mode="$arg"; fi
    prev="$arg"
  done
  if [ "$(.venv/bin/python -m redisops dev mode --mode "$mode")" = processes ]; then
    bash scripts/setup.sh --packages >&2
  fi
fi
exec .venv/bin/python -m redisops dev "$cmd" "${@:2}"
