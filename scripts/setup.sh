#!/usr/bin/env bash
# Idempotent set-up.
#   bash scripts/setup.sh              both parts below (the test suite needs both)
#   bash scripts/setup.sh --python     a Python virtualenv in .venv with the pinned requirements
#   bash scripts/setup.sh --packages   the programs the process mode and the tests run: Debian's
#                                      redis-server, redis-sentinel, redis-tools, prometheus +
#                                      promtool, prometheus-redis-exporter
#   bash scripts/setup.sh --checkov    checkov (requirements-checkov.txt) in its own virtualenv,
#                                      .venv-checkov, for `redisops scan` (its dependencies would
#                                      pin the project's); scripts/test.sh installs it too
# The Docker mode of the dev stack needs only --python (scripts/dev.sh asks for what it needs).
# The Debian packages' own services are disabled, not only stopped: enabled, they come back after
# a reboot and hold 6379/9090/9121 before the dev stack can bind them.
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=0
want_packages=0
want_checkov=0
for arg in "$@"; do
  case "$arg" in
    --python) want_python=1 ;;
    --packages) want_packages=1 ;;
    --checkov) want_checkov=1 ;;
    *) echo "scripts/setup.sh: unknown argument '$arg' (allowed: --python, --packages, --checkov)" >&2; exit 2 ;;
  esac
done
if [ "$#" -eq 0 ]; then want_python=1; want_packages=1; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGE_SERVICES="redis-server redis-sentinel prometheus prometheus-redis-exporter"

# sd_booted(3): systemd is the init system when its runtime directory exists. Both directories
# can be overridden (tests, unusual layouts).
systemd_booted() { [ -d "${SYSTEMD_RUNTIME_DIR:-/run/systemd/system}" ]; }
INIT_D="${SYSV_INIT_DIR:-/etc/init.d}"

disable_service() {
  local svc="$1"
  if systemd_booted && command -v systemctl >/dev/null 2>&1; then
    if systemctl cat "$svc.service" >/dev/null 2>&1; then
      if systemctl is-enabled --quiet "$svc" 2>/dev/null || systemctl is-active --quiet "$svc" 2>/dev/null; then
        $SUDO systemctl disable --now "$svc"
        echo "    disabled $svc (re-enable: sudo systemctl enable --now $svc)"
      fi
    fi
  elif [ -x "$INIT_D/$svc" ]; then
    # Without systemd (containers, sysvinit): stop it now and remove its boot links.
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
    $SUDO update-rc.d "$svc" disable >/dev/null
    echo "    disabled $svc (re-enable: sudo update-rc.d $svc enable)"
  fi
}

install_packages() {
  local missing=""
  for bin in redis-server redis-sentinel redis-cli redis-check-rdb prometheus promtool prometheus-redis-exporter; do
    command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
  done
  if [ "$(uname -s)" != "Linux" ] || ! command -v apt-get >/dev/null 2>&1; then
    # macOS and non-Debian Linux: nothing to install with apt; Docker mode does not need these.
    if [ -n "$missing" ]; then
      echo "==> not a Debian/Ubuntu system: install these yourself for the process mode and the tests:$missing"
      echo "    (macOS: brew install redis prometheus redis_exporter; the Docker mode needs none of them)"
    fi
    return 0
  fi
  if [ -n "$missing" ]; then
    echo "==> installing Debian packages (redis, sentinel, prometheus, promtool, redis_exporter)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      redis-server redis-sentinel redis-tools prometheus prometheus-redis-exporter python3-venv >/dev/null
  fi
  # The tests and the dev stack start their own processes on free loopback ports; the packages'
  # services would only hold the guide's ports (and come back at boot while enabled).
  echo "==> disabling the packages' own services ($PACKAGE_SERVICES)"
  for svc in $PACKAGE_SERVICES; do disable_service "$svc"; done
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi
}

install_python() {
  PYTHON="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
  fi
  local stamp=.venv/.requirements.sha256 want
  want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256)
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
}

install_checkov() {
  PYTHON="${PYTHON:-python3}"
  if [ ! -x .venv-checkov/bin/python ]; then
    echo "==> creating .venv-checkov"
    "$PYTHON" -m venv .venv-checkov
  fi
  local stamp=.venv-checkov/.requirements.sha256 want
  want=$(sha256 < requirements-checkov.txt)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing checkov into .venv-checkov (requirements-checkov.txt)"
    .venv-checkov/bin/pip install -q -r requirements-checkov.txt 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
    echo "$want" > "$stamp"
  fi
}

if [ "$want_packages" = 1 ]; then install_packages; fi
if [ "$want_python" = 1 ]; then install_python; fi
if [ "$want_checkov" = 1 ]; then install_checkov; fi
