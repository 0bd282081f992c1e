"""TLS certificate renewal on the Sentinel hosts: a systemd timer that brings a renewed
certificate from SSM to a running host and reloads it in place.

The server certificate is issued for a year (pulumi-tls `LocallySignedCert`, early renewal 30
days before it ends): `pulumi up` in that window writes the new certificate and key into the
node's SSM parameters. Hosts read their files at first boot only, so every hour this timer

1. fetches `tls/server.crt`, `tls/server.key` and `tls/ca.crt` from SSM (instance role),
2. checks the key matches the certificate and the certificate chains to the CA, and only then
3. swaps the files (same paths) and reloads TLS in place with
   `CONFIG SET tls-cert-file <same path> tls-key-file <same path> tls-ca-cert-file <same path>`:
   Redis re-reads the files and builds a new TLS context; connections made before keep their
   session (tests/integration/test_tls_renewal.py proves both on a real redis-server). The same
   path works because those configs are VOLATILE_CONFIG: CONFIG SET applies them even when the
   value is unchanged (redis/redis src/config.c at 7.0.15, which the hosts run - Debian
   bookworm's package - and at 7.2.5),
4. restarts redis-sentinel, whose TLS listener (26379) serves the same files but cannot reload
   them: in Sentinel mode CONFIG is not a command, and `SENTINEL CONFIG SET` knows only
   resolve-hostnames, announce-hostnames, announce-ip, announce-port, sentinel-user and
   sentinel-pass (redis/redis src/sentinel.c, sentinelConfigSetCommand, as read for the 7.0
   line; no tls-* key), which tests/integration/test_tls_renewal.py asserts on the hosts' own
   Debian redis-sentinel 7.0.15. One host
   at a time: only while the local Sentinel's `SENTINEL CKQUORUM` counts every Sentinel usable
   (SENTINELS), so a restart never takes a second voter away while another host restarts or is
   down; otherwise the restart waits for a later run (the marker below). Sentinel persists its
   state in sentinel.conf, so a restart loses nothing,
   A reload that fails (Redis unreachable or loading, CONFIG SET refused, Sentinel not
   restarted) is retried on every later run until it succeeds: a marker file is kept until
   then, and Redis serving another certificate than the one on disk also triggers a reload.
5. publishes the days left of the certificate Redis *serves* as the CloudWatch metric
   `redisstack/Redis` `TlsCertificateDaysLeft` (dimension `node`), which an alarm watches.

CONFIG SET runs as the ACL `admin` user; its password is read from Secrets Manager into the
environment of redis-cli (REDISCLI_AUTH), never into argv or a file. Everything the script needs
comes from its EnvironmentFile, which holds names and paths only.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

SCRIPT_PATH = "/usr/local/sbin/redisstack-tls-renew"
ENV_PATH = "/etc/default/redisstack-tls-renew"
UNIT = "redisstack-tls-renew"
METRIC = "TlsCertificateDaysLeft"
# Every hour (randomized per host): a renewed certificate reaches all hosts within ~1 h 10 min of
# `pulumi up`, and the days-left metric is published at least 5 times per 6-hour alarm period.
TIMER_INTERVAL = "1h"
TIMER_JITTER = "10min"

# Read by bash, so the variables are the contract between the rendered environment and the script.
ENV_KEYS = ("REGION", "PREFIX", "ADMIN_SECRET_ID", "REDIS_HOST", "REDIS_PORT", "NODE", "TLS_DIR",
            "EXPORTER_CA_FILE", "FILE_OWNER", "EXPORTER_OWNER", "NAMESPACE", "SENTINEL_UNIT",
            "SENTINEL_PORT", "MASTER_NAME", "SENTINELS")

RENEW_SCRIPT = r"""#!/bin/bash
# redisstack-tls-renew: bring a renewed TLS certificate from SSM to this host and reload it in
# place (infra/components/tls_renewal.py). Idempotent: does nothing but publish the days left
# when the files in SSM equal the files on disk.
set -euo pipefail
for v in REGION PREFIX ADMIN_SECRET_ID REDIS_HOST REDIS_PORT NODE TLS_DIR EXPORTER_CA_FILE FILE_OWNER \
         EXPORTER_OWNER NAMESPACE SENTINEL_UNIT SENTINEL_PORT MASTER_NAME SENTINELS; do
  [ -n "${!v:-}" ] || { echo "redisstack-tls-renew: $v is not set (see its EnvironmentFile)" >&2; exit 2; }
done
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {
  aws ssm get-parameter --region "$REGION" --with-decryption --name "$PREFIX/$1" \
    --query Parameter.Value --output text > "$work/$2"
}
fetch tls/server.crt server.crt
fetch tls/server.key server.key
fetch tls/ca.crt ca.crt

# Never swap in a pair Redis would refuse: the key must match the certificate, and the
# certificate must chain to the CA clients verify against.
cert_key=$(openssl x509 -noout -pubkey -in "$work/server.crt" | sha256sum)
key_key=$(openssl pkey -pubout -in "$work/server.key" | sha256sum)
if [ "$cert_key" != "$key_key" ]; then
  echo "redisstack-tls-renew: $PREFIX/tls/server.key does not match tls/server.crt; nothing changed" >&2
  exit 1
fi
openssl verify -CAfile "$work/ca.crt" "$work/server.crt" >/dev/null

changed=0
for f in server.crt server.key ca.crt; do
  cmp -s "$work/$f" "$TLS_DIR/$f" || changed=1
done
# Kept until Redis serves the new files and Sentinel was restarted: a reload that fails below
# (Redis unreachable or loading, a refused CONFIG SET, a failed Sentinel restart) leaves the new
# files on disk, so the next run would otherwise see nothing to do and never retry it.
pending="$TLS_DIR/.reload-pending"
if [ "$changed" = 1 ]; then
  # Same paths, atomic renames: Redis reads the files again only when told to, below.
  install -o "$FILE_OWNER" -g "$FILE_OWNER" -m 0600 "$work/server.key" "$TLS_DIR/.server.key.new"
  install -o "$FILE_OWNER" -g "$FILE_OWNER" -m 0644 "$work/server.crt" "$TLS_DIR/.server.crt.new"
  install -o "$FILE_OWNER" -g "$FILE_OWNER" -m 0644 "$work/ca.crt" "$TLS_DIR/.ca.crt.new"
  install -o "$EXPORTER_OWNER" -g "$EXPORTER_OWNER" -m 0444 "$work/ca.crt" "$EXPORTER_CA_FILE.new"
  touch "$pending"
  mv -f "$TLS_DIR/.server.key.new" "$TLS_DIR/server.key"
  mv -f "$TLS_DIR/.server.crt.new" "$TLS_DIR/server.crt"
  mv -f "$TLS_DIR/.ca.crt.new" "$TLS_DIR/ca.crt"
  mv -f "$EXPORTER_CA_FILE.new" "$EXPORTER_CA_FILE"
fi

served_fingerprint() {
  openssl s_client -connect "$REDIS_HOST:$REDIS_PORT" -CAfile "$TLS_DIR/ca.crt" </dev/null 2>/dev/null \
    | openssl x509 -noout -fingerprint -sha256
}
on_disk=$(openssl x509 -noout -fingerprint -sha256 -in "$TLS_DIR/server.crt")
if [ -e "$pending" ] || [ "$(served_fingerprint || true)" != "$on_disk" ]; then
  REDISCLI_AUTH=$(aws secretsmanager get-secret-value --region "$REGION" --secret-id "$ADMIN_SECRET_ID" \
    --query SecretString --output text)
  export REDISCLI_AUTH
  reply=$(redis-cli --tls --cacert "$TLS_DIR/ca.crt" -h "$REDIS_HOST" -p "$REDIS_PORT" --user admin --no-auth-warning \
    CONFIG SET tls-cert-file "$TLS_DIR/server.crt" tls-key-file "$TLS_DIR/server.key" \
    tls-ca-cert-file "$TLS_DIR/ca.crt" 2>&1) || true
  if [ "$reply" != "OK" ]; then
    echo "redisstack-tls-renew: CONFIG SET answered: $reply (retried on the next run)" >&2
    exit 1
  fi
  # Sentinel serves the same files on its TLS port and cannot reload them: restart it, one host
  # at a time - only while this Sentinel counts every Sentinel usable.
  quorum=$(redis-cli --tls --cacert "$TLS_DIR/ca.crt" -h "$REDIS_HOST" -p "$SENTINEL_PORT" --user admin \
    --no-auth-warning SENTINEL CKQUORUM "$MASTER_NAME" 2>&1) || true
  unset REDISCLI_AUTH
  case "$quorum" in
    "OK $SENTINELS usable Sentinels"*) ;;
    *) echo "redisstack-tls-renew: Sentinel not restarted while not all $SENTINELS Sentinels are usable" \
         "($quorum); retried on the next run" >&2
       exit 1 ;;
  esac
  systemctl restart "$SENTINEL_UNIT"
  rm -f "$pending"
  echo "redisstack-tls-renew: reloaded $(openssl x509 -noout -serial -enddate -in "$TLS_DIR/server.crt" | tr '\n' ' ')"
fi

# What clients get, not what is on disk: the certificate Redis serves right now.
served=$(openssl s_client -connect "$REDIS_HOST:$REDIS_PORT" -CAfile "$TLS_DIR/ca.crt" </dev/null 2>/dev/null \
  | openssl x509 -noout -enddate)
days=$(( ($(date -d "${served#notAfter=}" +%s) - $(date +%s)) / 86400 ))
aws cloudwatch put-metric-data --region "$REGION" --namespace "$NAMESPACE" --metric-data \
  "[{\"MetricName\":\"TlsCertificateDaysLeft\",\"Dimensions\":[{\"Name\":\"node\",\"Value\":\"$NODE\"}],\"Value\":$days,\"Unit\":\"Count\"}]"
echo "redisstack-tls-renew: $NODE serves a certificate with $days days left"
"""


def renew_environment(values: Mapping[str, str]) -> str:
    """The EnvironmentFile body (names and paths only; systemd reads KEY=value lines)."""
    missing = [k for k in ENV_KEYS if not values.get(k)]
    unknown = sorted(set(values) - set(ENV_KEYS))
    if missing or unknown:
        raise ValueError(f"renew_environment: missing {missing}, unknown {unknown}")
    return "".join(f"{k}={shlex.quote(values[k])}\n" for k in ENV_KEYS)


SERVICE_UNIT = f"""[Unit]
Description=redisstack: fetch a renewed TLS certificate from SSM and reload it in place
After=network-online.target redis-server.service
Wants=network-online.target

[Service]
Type=oneshot
EnvironmentFile={ENV_PATH}
ExecStart={SCRIPT_PATH}
"""

TIMER_UNIT = f"""[Unit]
Description=redisstack: TLS certificate renewal, hourly

[Timer]
OnBootSec=5min
OnUnitActiveSec={TIMER_INTERVAL}
RandomizedDelaySec={TIMER_JITTER}

[Install]
WantedBy=timers.target
"""


def install_commands(environment: str) -> str:
    """The user-data lines that install the script, its environment and the timer."""
    return "\n".join([
        f"cat > {SCRIPT_PATH} <<'REDISSTACK_TLS_RENEW'",
        RENEW_SCRIPT.rstrip("\n"),
        "REDISSTACK_TLS_RENEW",
        f"chmod 0755 {SCRIPT_PATH}",
        f"cat > {ENV_PATH} <<'EOF'",
        environment.rstrip("\n"),
        "EOF",
        f"cat > /etc/systemd/system/{UNIT}.service <<'EOF'",
        SERVICE_UNIT.rstrip("\n"),
        "EOF",
        f"cat > /etc/systemd/system/{UNIT}.timer <<'EOF'",
        TIMER_UNIT.rstrip("\n"),
        "EOF",
        "systemctl daemon-reload",
        f"systemctl enable --now {UNIT}.timer",
    ])
