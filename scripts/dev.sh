#!/usr/bin/env bash
# The main job on the embedded default (Pulumi.dev.yaml): bring the dev stack up and
# smoke-test it. With the Pulumi CLI and Docker present this is `pulumi up` on the dev stack
# with a local state backend; otherwise the same files run as local processes on loopback.
#   bash scripts/dev.sh up | down | status
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m redisops dev "${1:-up}" "${@:2}"
