"""The `sentinel` target: three EC2 hosts in three AZs, each running redis + Redis Sentinel.

Layout per host i (0 = the initial primary): a fixed network interface (its private IP is the
node's identity in every rendered file and survives instance replacement), an instance from
a pinned version of the shared launch template (IMDSv2 only, encrypted root volume), a separate
encrypted data volume that outlives the instance (protected, retained), Debian's redis
packages. The rendered files (`redis_conf.sentinel`) and the TLS key are kept as KMS-encrypted
SecureString parameters under `/redisstack/<stack>/<name>/node-<i>/`; user data carries only
their names and fetches them at first boot with the instance role, which may read that path
and nothing else. No secret is ever in user data, instance metadata or a process argv.

Operators reach hosts through Session Manager only (user data installs the SSM agent, which
Debian AMIs lack); a systemd timer brings renewed TLS certificates from SSM and reloads them in
place (infra/components/tls_renewal.py). A host is replaced delete-first: its fixed ENI is the
instance's primary interface, which EC2 cannot move while the old instance runs.

Backups: EBS snapshots of the data volumes by a DLM policy in the backup window; the stack's
KMS key is protected and retained like the volumes it encrypts.
Alarms: EC2 status checks per host (system failures auto-recover the instance), the served TLS
certificate's days left and, through the CloudWatch agent scraping the local redis_exporter
(EMF), Redis alarms from the thresholds table for every row that is a plain gauge, an increase
of a counter or the memory ratio.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_random as random
import pulumi_tls as tls

from infra.components.aws_common import (
    PortRule,
    account,
    alarm_topic,
    app_secret,
    child,
    customer_kms_key,
    encrypted_log_group,
    fixed_name,
    key_use,
    redis_security_group,
    stack_log_groups,
)
from infra.components.package_floors import METRIC as BOOT_REFUSED_METRIC
from infra.components.package_floors import check_call, check_functions
from infra.components.tls_renewal import METRIC as TLS_DAYS_METRIC
from infra.components.tls_renewal import install_commands, renew_environment
from infra.envcontract import env_contract, sentinel_url
from infra.errors import SettingError
from infra.monitoring.cloudwatch import TLS_DAYS_CRITICAL
from infra.monitoring.grafana import CONFIG_COMMAND_OFF
from infra.settings import Settings
from infra.thresholds import Threshold
from infra.user_data import MAX_BYTES as USER_DATA_MAX_BYTES
from infra.user_data import pack, raw_size
from ratelimit.functions import LIBRARY_NAME, LIBRARY_RELEASE, function_library
from ratelimit.tiers import Tier
from redis_conf.acl import CREDENTIALS, render_acl_file
from redis_conf.render import TlsFiles
from redis_conf.schema import RedisConf
from redis_conf.sentinel import (
    MASTER_NAME,
    NODE_COUNT,
    REDIS_PORT,
    SENTINEL_PORT,
    Endpoint,
    SentinelTuning,
    TopologyError,
    topology_files,
)

ETC = "/etc/redis"
DATA_DIR = "/var/lib/redis"
ACL_FILE = f"{ETC}/users.acl"
TLS_DIR = f"{ETC}/tls"
EXPORTER_PORT = 9121
EXPORTER_DIR = "/etc/redis_exporter"
EXPORTER_PASSWORD_FILE = f"{EXPORTER_DIR}/password.json"
# The exporter runs as `prometheus` and cannot enter /etc/redis/tls (redis:redis 0750): it
# verifies Redis with its own copy of the CA certificate (public, 0444).
EXPORTER_CA_FILE = f"{EXPORTER_DIR}/ca.crt"
# CloudWatch namespace of the hosts' own metrics (EMF from the exporter, BootRefused,
# LibraryLoadFailed, TlsCertificateDaysLeft): one per project and stack. A shared namespace with
# the same `node` dimension let two Sentinel stacks of one account and region read each other's
# datapoints in their alarms, and PutMetricData's only IAM scope is `cloudwatch:namespace`
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html),
# so a per-stack namespace also keeps one stack's hosts from writing another stack's metrics.
CW_NAMESPACE_PREFIX = "redisstack"
# CloudWatch: 1-255 characters of letters, digits and . - _ / # : space; not starting with "AWS/"
# (PutMetricData Namespace, https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html).
_CW_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9._/#:\- ]{1,255}$")


def metric_namespace(project: str, stack: str) -> str:
    """`redisstack/<project>/<stack>`: the hosts' metrics of exactly this stack."""
    namespace = f"{CW_NAMESPACE_PREFIX}/{project}/{stack}"
    if not _CW_NAMESPACE_RE.match(namespace) or namespace.startswith("AWS/"):
        raise SettingError("stack", f"{project}/{stack}", "a project and stack name CloudWatch accepts in a metric "
                           "namespace (letters, digits, . - _ # : space; at most 255 characters in all)")
    return namespace
PASSWORD_LENGTH = 40
DATA_DEVICE = "/dev/sdf"
XEN_DATA_DEVICE = "/dev/xvdf"  # how a Xen instance names DATA_DEVICE
# Files fetched at boot: parameter leaf -> (path, owner, mode).
HOST_FILES: Mapping[str, tuple[str, str, str]] = {
    "redis.conf": (f"{ETC}/redis.conf", "redis", "0600"),
    "sentinel.conf": (f"{ETC}/sentinel.conf", "redis", "0600"),
    "users.acl": (ACL_FILE, "redis", "0600"),
    "exporter-password.json": (EXPORTER_PASSWORD_FILE, "prometheus", "0400"),
}
TLS_HOST_FILES: Mapping[str, tuple[str, str, str]] = {
    "tls/server.key": (f"{TLS_DIR}/server.key", "redis", "0600"),
    "tls/server.crt": (f"{TLS_DIR}/server.crt", "redis", "0644"),
    "tls/ca.crt": (f"{TLS_DIR}/ca.crt", "redis", "0644"),
}
# Parameters fetched a second time, to a place another user can read.
EXPORTER_TLS_FILES: Mapping[str, tuple[str, str, str]] = {
    "tls/ca.crt": (EXPORTER_CA_FILE, "prometheus", "0444"),
}

# Threshold rows CloudWatch can judge from what the agent publishes (per node):
#   gauge     - the exporter metric itself
#   increase  - growth of a counter over the period: the agent already publishes Prometheus
#               counters as per-scrape deltas, so the Sum over the period is the increase
#   ratio     - 100 * a / b
Kind = Literal["gauge", "increase", "ratio"]
CW_ROWS: Mapping[str, tuple[Kind, tuple[str, ...], str]] = {
    "memory_usage": ("ratio", ("redis_memory_used_bytes", "redis_memory_max_bytes"), "Maximum"),
    "connected_clients": ("gauge", ("redis_connected_clients",), "Maximum"),
    "blocked_clients": ("gauge", ("redis_blocked_clients",), "Maximum"),
    "redis_down": ("gauge", ("redis_up",), "Minimum"),
    "evicted_keys": ("increase", ("redis_evicted_keys_total",), "Sum"),
    "rejected_connections": ("increase", ("redis_rejected_connections_total",), "Sum"),
    "rdb_last_bgsave_failed": ("gauge", ("redis_rdb_last_bgsave_status",), "Minimum"),
    "aof_last_write_failed": ("gauge", ("redis_aof_last_write_status",), "Minimum"),
    "replication_link_down": ("gauge", ("redis_master_link_up",), "Minimum"),
}
# Published by replicas only, and roles move on failover: silence is not a breach.
_MISSING_OK = {"replication_link_down", "evicted_keys", "rejected_connections"}


@dataclass(frozen=True)
class SentinelHostsArgs:
    """Everything SentinelHosts needs, validated without network calls; secrets out of repr."""

    stack: str
    engine: str
    engine_version: str
    tls: bool
    redis_conf: RedisConf
    tiers: tuple[Tier, ...]
    thresholds: tuple[Threshold, ...]
    vpc_id: str
    subnet_ids: tuple[str, ...]
    app_security_group_ids: tuple[str, ...]
    allowed_cidrs: tuple[str, ...] = ()
    instance_type: str = "t4g.small"
    ami_ssm_parameter: str = "/aws/service/debian/release/bookworm/latest/arm64"
    data_volume_gib: int = 20
    tuning: SentinelTuning = field(default_factory=SentinelTuning)
    backup_retention_days: int = 7
    backup_window: str = "03:00-05:00"
    timeout_ms: int = 5000
    enabled: bool = True
    rate_limit_mode: str = "redis"
    alarm_email: str | None = None
    log_retention_days: int = 365
    tags: Mapping[str, str] = field(default_factory=dict)
    app_password: str | None = field(default=None, repr=False)
    # Other log groups of the stack encrypted with the hosts' key (the smoke function's).
    extra_log_groups: dict[str, str] = field(default_factory=dict)
    # Pulumi project: with the stack it names the account-wide resources (parameters, log group,
    # topic, secrets), so two projects' stacks of the same name in one account never collide.
    project: str = "redisstack"

    @property
    def metric_namespace(self) -> str:
        return metric_namespace(self.project, self.stack)

    def __post_init__(self) -> None:
        metric_namespace(self.project, self.stack)  # refused here, before anything is created
        if self.engine != "redis":
            raise SettingError("engine", self.engine, "the sentinel target installs Debian's redis packages: "
                               "use engine redis")
        if len(self.subnet_ids) != NODE_COUNT or len(set(self.subnet_ids)) != NODE_COUNT:
            raise SettingError("network.subnetIds", list(self.subnet_ids),
                               f"exactly {NODE_COUNT} distinct subnets, one per availability zone")
        if not self.app_security_group_ids and not self.allowed_cidrs:
            raise SettingError("network.appSecurityGroupIds", [], "required: who may reach Redis and Sentinel")

    @staticmethod
    def from_settings(settings: Settings) -> SentinelHostsArgs:
        cfg = settings.config
        s = cfg.sentinel
        try:
            tuning = SentinelTuning.from_settings(s)
        except TopologyError as exc:
            raise SettingError(exc.key, exc.value, exc.allowed) from None
        assert cfg.network.vpc_id is not None  # settings require it for this target
        return SentinelHostsArgs(
            project=settings.project,
            stack=settings.stack,
            engine=cfg.engine,
            engine_version=cfg.engine_version,
            tls=settings.tls,
            redis_conf=settings.redis_conf,
            tiers=settings.tiers,
            thresholds=settings.thresholds,
            vpc_id=cfg.network.vpc_id,
            subnet_ids=tuple(cfg.network.subnet_ids),
            app_security_group_ids=tuple(cfg.network.app_security_group_ids),
            allowed_cidrs=tuple(cfg.network.allowed_cidrs),
            instance_type=s.instance_type,
            ami_ssm_parameter=s.ami_ssm_parameter,
            data_volume_gib=s.data_volume_gib,
            tuning=tuning,
            backup_retention_days=cfg.backup.retention_days,
            backup_window=cfg.backup.window,
            timeout_ms=cfg.timeout_ms,
            enabled=cfg.enabled,
            rate_limit_mode=cfg.rate_limit_mode,
            # Shared with the elasticache target until the settings grow a target-neutral key.
            alarm_email=cfg.alerting.email,
            log_retention_days=settings.log_retention_days,
            tags=settings.tags,
            app_password=cfg.password.get_secret_value() if cfg.password else None,
            extra_log_groups=stack_log_groups(settings),
        )

    def parameter_prefix(self, name: str) -> str:
        return f"/{self.project}/{self.stack}/{name}"


def host_tls_files() -> TlsFiles:
    return TlsFiles(cert_file=f"{TLS_DIR}/server.crt", key_file=f"{TLS_DIR}/server.key",
                    ca_cert_file=f"{TLS_DIR}/ca.crt")


def render_host_files(args: SentinelHostsArgs, ips: Sequence[str], passwords: Mapping[str, str]) -> list[dict[str, str]]:
    """Per host: parameter leaf -> content (secret). Pure, so tests can start exactly these."""
    nodes = [Endpoint(ip, REDIS_PORT) for ip in ips]
    sentinels = [Endpoint(ip, SENTINEL_PORT) for ip in ips]
    files = topology_files(args.redis_conf, nodes, sentinels, passwords=passwords, tuning=args.tuning,
                           tls=host_tls_files() if args.tls else None, data_dirs=[DATA_DIR] * NODE_COUNT,
                           sentinel_dirs=[DATA_DIR] * NODE_COUNT, aclfile=ACL_FILE)
    acl = render_acl_file(passwords)
    out = []
    for i, f in enumerate(files):
        scheme = "rediss" if args.tls else "redis"
        addr = f"{scheme}://{ips[i]}:{REDIS_PORT}"
        out.append({
            "redis.conf": f.redis_conf,
            "sentinel.conf": f.sentinel_conf,
            "users.acl": acl,
            "exporter-password.json": json.dumps({addr: passwords["monitor"]}) + "\n",
        })
    return out


def exporter_args(ip: str, *, tls: bool) -> str:
    scheme = "rediss" if tls else "redis"
    parts = [f"-redis.addr {scheme}://{ip}:{REDIS_PORT}", "-redis.user monitor",
             f"-redis.password-file {EXPORTER_PASSWORD_FILE}",
             # Only the CloudWatch agent on this host scrapes it.
             f"-web.listen-address 127.0.0.1:{EXPORTER_PORT}",
             # CONFIG GET would hand the monitor user `masterauth` (redis_conf/exporter.py).
             f"-config-command {CONFIG_COMMAND_OFF}"]
    if tls:
        parts.append(f"-tls-ca-cert-file {EXPORTER_CA_FILE}")
    return " ".join(parts)


def cloudwatch_agent_config(node: str, log_group: str, namespace: str) -> dict[str, Any]:
    """The agent scrapes the local exporter and publishes the alarm metrics via EMF."""
    metrics = sorted({m for _, names, _ in CW_ROWS.values() for m in names})
    return {
        "agent": {"run_as_user": "cwagent"},
        "logs": {
            "metrics_collected": {
                "prometheus": {
                    "log_group_name": log_group,
                    "prometheus_config_path": "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml",
                    "emf_processor": {
                        "metric_namespace": namespace,
                        "metric_declaration": [{
                            "source_labels": ["job"], "label_matcher": "^redis$",
                            "dimensions": [["node"]],
                            "metric_selectors": [f"^{m}$" for m in metrics],
                        }],
                    },
                },
            },
            "force_flush_interval": 5,
        },
    }


def cloudwatch_agent_prometheus(node: str) -> str:
    return json.dumps({"global": {"scrape_interval": "60s", "scrape_timeout": "10s"},
                       "scrape_configs": [{"job_name": "redis", "static_configs": [
                           {"targets": [f"127.0.0.1:{EXPORTER_PORT}"], "labels": {"node": node}}]}]})


def ssm_agent_url(region: str, dns_suffix: str = "amazonaws.com") -> str:
    """Debian AMIs ship no SSM agent; AWS publishes the .deb per region and architecture
    (https://docs.aws.amazon.com/systems-manager/latest/userguide/agent-install-deb.html):
    `https://s3.<region>.amazonaws.com/amazon-ssm-<region>/latest/debian_<arch>/amazon-ssm-agent.deb`
    (the partition's DNS suffix, amazonaws.com.cn in China). The regional bucket is reachable
    through an S3 gateway endpoint (docs/sentinel.md, "Egress")."""
    return f"https://s3.{region}.{dns_suffix}/amazon-ssm-{region}/latest/debian_$ARCH/amazon-ssm-agent.deb"


LIBRARY_FILE = f"{ETC}/{LIBRARY_NAME}.lua"
LIBRARY_DELIMITER = "RATELIMIT_LUA_EOF"


# What the boot publishes when it could not load the library (0 when it did), as the package
# floor check publishes BootRefused: same namespace and node dimension.
LIBRARY_LOAD_METRIC = "LibraryLoadFailed"
# A primary LOADING a large RDB/AOF answers `-LOADING` to every command until the dataset is in
# memory; minutes on a multi-GB dataset. The boot waits for it this long, then gives up (logged,
# metric), leaving the library to the deploy workflow's `redisops functions load`.
LIBRARY_LOAD_DEADLINE_S = 1800


def functions_load_commands(*, ip: str, tls: bool, admin_secret_arn: str, port: int = REDIS_PORT,
                            library_file: str = LIBRARY_FILE, ca_file: str = f"{TLS_DIR}/ca.crt",
                            deadline_s: int = LIBRARY_LOAD_DEADLINE_S, namespace: str) -> str:
    """Boot lines that load the limiter's Functions library as the admin user on the host that is
    the primary. The application user may only FCALL it (redis_conf/acl.py). A replica refuses
    FUNCTION LOAD (READONLY) and needs none: functions replicate, and persist in the RDB/AOF, so
    replicas, failovers, restarts and restores keep the library (tests/integration). The text
    travels as is in the user data, a quoted here-document (no expansion; SSM String parameters
    hold at most 8 KB), which the whole user data's gzip compresses (infra/user_data.py).

    Never fatal, and last in the boot (after the TLS renewal timer is installed): a Redis still
    LOADING is waited for up to `deadline_s`, and a failure is logged (stderr, syslog) and
    published as LIBRARY_LOAD_METRIC = 1, but does not stop the boot under `set -e`. Upgrades of a
    running stack come from the deploy workflow's `redisops functions load` (every AWS stack)."""
    library = function_library()
    if LIBRARY_DELIMITER in library.splitlines():
        raise ValueError(f"the {LIBRARY_NAME} library holds the line {LIBRARY_DELIMITER!r}, which ends its "
                         "here-document in the user data; rename the delimiter (sentinel_hosts.LIBRARY_DELIMITER)")
    tls_args = f"--tls --cacert {shlex.quote(ca_file)} " if tls else ""
    metric = (f'aws cloudwatch put-metric-data --region "$REGION" --namespace {shlex.quote(namespace)} '
              f'--metric-name {LIBRARY_LOAD_METRIC} --dimensions "node=$NODE" --value')
    return f"""
# The limiter's Redis Functions library ({LIBRARY_NAME} {LIBRARY_RELEASE}, ratelimit/functions.py).
cat > {shlex.quote(library_file)} <<'{LIBRARY_DELIMITER}'
{library.rstrip(chr(10))}
{LIBRARY_DELIMITER}
rcli() {{ redis-cli {tls_args}-h {shlex.quote(ip)} -p {port} --user admin --no-auth-warning "$@"; }}
load_library() {{  # called in an || list: `set -e` is off inside, so every step checks itself
  local answer="" loaded deadline=$((SECONDS + {deadline_s}))
  REDISCLI_AUTH=$(aws secretsmanager get-secret-value --region "$REGION" --secret-id {shlex.quote(admin_secret_arn)} \
    --query SecretString --output text) || {{ echo "admin secret not readable" >&2; return 1; }}
  export REDISCLI_AUTH
  # PONG once the dataset is in memory; -LOADING (or refused connections) until then.
  while [ "$SECONDS" -lt "$deadline" ]; do
    answer=$(rcli PING 2>&1 || true)
    if [ "$answer" = "PONG" ]; then break; fi
    sleep 2
  done
  [ "$answer" = "PONG" ] || {{ echo "redis as admin never answered PING within {deadline_s}s ($answer)" >&2; return 1; }}
  if [ "$(rcli ROLE | head -n 1)" = "master" ]; then
    loaded=$(rcli -x FUNCTION LOAD REPLACE < {shlex.quote(library_file)})
    [ "$loaded" = "{LIBRARY_NAME}" ] || {{ echo "FUNCTION LOAD answered: $loaded" >&2; return 1; }}
    echo "redisstack: loaded the {LIBRARY_NAME} library ($(rcli FCALL_RO ratelimit_version 0))"
  fi
}}
if load_library; then
  {metric} 0 || true
else
  msg="redisstack: the {LIBRARY_NAME} library was not loaded on $NODE; run 'redisops functions load'"
  echo "$msg" >&2
  logger -t redisstack -p daemon.err "$msg" || true
  {metric} 1 || true
fi
unset REDISCLI_AUTH
"""


def current_password_commands(secret_ids: Mapping[str, str], files: Sequence[str] = (ACL_FILE, f"{ETC}/sentinel.conf")
                              ) -> str:
    """Bash that writes the current password digest of each rotated ACL user (user -> secret ARN)
    into the files fetched from SSM. Those were rendered by `pulumi up`; the rotation Lambda
    (infra/components/rotation.py) changes the passwords later, in Secrets Manager and on the
    running nodes only, so a host that boots after a rotation would otherwise come up with
    passwords nobody holds any more. The password stays in a shell variable (printf is a builtin:
    no argv); only its SHA-256 digest reaches the files, as in the rendered ones."""
    quoted = " ".join(shlex.quote(f) for f in files)
    lines = ["current_password() {  # <ACL user> <secret id>",
             '  local pw digest',
             '  pw=$(aws secretsmanager get-secret-value --region "$REGION" --secret-id "$2" '
             '--query SecretString --output text)',
             '  digest=$(printf \'%s\' "$pw" | sha256sum | cut -d" " -f1)',
             f'  sed -i -E "s/^(user $1 [^#]*)#[0-9a-f]{{64}}/\\1#$digest/" {quoted}',
             "}"]
    lines += [f"current_password {shlex.quote(user)} {shlex.quote(arn)}" for user, arn in sorted(secret_ids.items())]
    return "\n".join(lines)


def user_data(*, region: str, prefix: str, node: str, tls: bool, exporter: str, agent_config: str,
              agent_prometheus: str, data_volume_id: str, namespace: str, tls_renewal: str = "",
              dns_suffix: str = "amazonaws.com", functions_load: str = "", current_passwords: str = "") -> str:
    """cloud-init shell script. Holds parameter names, never their values. `tls_renewal`: the
    install lines of the renewal timer (tls_renewal.install_commands), empty without TLS;
    `functions_load`: `functions_load_commands(...)`; `current_passwords`:
    current_password_commands for the rotated users."""
    files = list(HOST_FILES.items())
    if tls:
        files += [*TLS_HOST_FILES.items(), *EXPORTER_TLS_FILES.items()]
    fetch = "\n".join(
        f"fetch {shlex.quote(leaf)} {shlex.quote(path)} {owner} {mode}" for leaf, (path, owner, mode) in files)
    return f"""#!/bin/bash
# redisstack sentinel host {node}: installs Debian's redis, fetches its files from SSM, starts units.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
REGION={shlex.quote(region)}
PREFIX={shlex.quote(prefix)}/{node}
DATA_VOLUME={shlex.quote(data_volume_id)}
NODE={node}

# Operator access: Session Manager through the SSM agent, which Debian AMIs do not ship. It
# connects out over HTTPS; no inbound port is opened for it (no SSH, no key pair). First, before
# apt: a host whose package mirror is unreachable (egress only through VPC endpoints and an
# internal mirror, docs/sentinel.md "Egress") must still be reachable to find out why. The .deb
# has no dependencies; curl may be missing before apt runs, python3 never is (cloud-init).
ARCH=$(dpkg --print-architecture)
SSM_AGENT_URL="{ssm_agent_url(region, dns_suffix)}"
if command -v curl >/dev/null 2>&1; then
  curl -fsSL -o /tmp/amazon-ssm-agent.deb "$SSM_AGENT_URL"
else
  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
    "$SSM_AGENT_URL" /tmp/amazon-ssm-agent.deb
fi
dpkg -i /tmp/amazon-ssm-agent.deb
systemctl enable amazon-ssm-agent
systemctl restart amazon-ssm-agent

# Egress is HTTPS only (no port 80): apt uses the Debian mirrors' HTTPS endpoint.
for f in /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/apt/mirrors/*; do
  if [ -f "$f" ]; then sed -E -i 's#http://([a-z0-9.-]*\\.)?debian\\.org/#https://deb.debian.org/#g' "$f"; fi
done
apt-get update -q
apt-get install -y -q redis-server redis-sentinel redis-tools prometheus-redis-exporter awscli curl openssl
systemctl stop redis-server redis-sentinel prometheus-redis-exporter

# Debian package floors (infra/versions.py DEBIAN_FLOORS): a package below its floor, or a release
# without floors, stops the boot here, before any secret is fetched (infra/components/package_floors.py).
{check_functions(namespace)}
{check_call()}

# Data volume: a separate, retained EBS volume ($DATA_VOLUME, encrypted) that Pulumi attaches at
# {DATA_DEVICE} after the instance starts, so wait for it. Nitro exposes it as NVMe with the
# volume id as serial; Xen as {XEN_DATA_DEVICE}. Formatted only when it has no
# filesystem (a replaced host mounts the previous host's data).
DATA_DISK=""
for _ in $(seq 1 180); do
  for dev in "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${{DATA_VOLUME/-/}}" {XEN_DATA_DEVICE} {DATA_DEVICE}; do
    if [ -b "$dev" ]; then DATA_DISK=$(readlink -f "$dev"); break 2; fi
  done
  sleep 5
done
[ -n "$DATA_DISK" ] || {{ echo "data volume $DATA_VOLUME never attached" >&2; exit 1; }}
blkid "$DATA_DISK" >/dev/null || mkfs.ext4 -q -L redisdata "$DATA_DISK"
grep -q 'LABEL=redisdata' /etc/fstab || echo 'LABEL=redisdata {DATA_DIR} ext4 defaults,nofail 0 2' >> /etc/fstab
mount {DATA_DIR} || true
chown redis:redis {DATA_DIR}; chmod 0750 {DATA_DIR}

# Secrets come from SSM SecureString (KMS) over the instance role; umask keeps them private
# from the moment they exist.
umask 077
install -d -o redis -g redis -m 0750 {ETC} {TLS_DIR}
install -d -o prometheus -g prometheus -m 0750 {EXPORTER_DIR}
fetch() {{
  aws ssm get-parameter --region "$REGION" --with-decryption --name "$PREFIX/$1" \\
    --query Parameter.Value --output text > "$2.tmp"
  chown "$3:$3" "$2.tmp"; chmod "$4" "$2.tmp"; mv "$2.tmp" "$2"
}}
{fetch}
{current_passwords}
umask 022

cat > /etc/default/prometheus-redis-exporter <<'EOF'
ARGS="{exporter}"
EOF

# CloudWatch agent (EMF metrics from the local exporter for the threshold alarms).
curl -fsSL -o /tmp/cwagent.deb "https://amazoncloudwatch-agent.s3.amazonaws.com/debian/$ARCH/latest/amazon-cloudwatch-agent.deb"
dpkg -i /tmp/cwagent.deb
cat > /opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml <<'EOF'
{agent_prometheus}
EOF
cat > /opt/aws/amazon-cloudwatch-agent/etc/redisstack.json <<'EOF'
{agent_config}
EOF
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \\
  -c file:/opt/aws/amazon-cloudwatch-agent/etc/redisstack.json

systemctl enable --now redis-server
systemctl enable --now redis-sentinel
systemctl enable --now prometheus-redis-exporter
{tls_renewal}{functions_load}
"""


_DLM_UNSAFE = re.compile(r"[^0-9A-Za-z _-]+")


def dlm_description(text: str) -> str:
    """DLM accepts only `[0-9A-Za-z _-]`, 1-500 characters, in a policy description (botocore
    data/dlm/2018-01-12/service-2.json, shape PolicyDescription); project and stack names may
    hold `.` and other characters, which become `-`."""
    return _DLM_UNSAFE.sub("-", text).strip()[:500] or "redisstack"


def _assume(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


# What the SSM agent needs for Session Manager (AmazonSSMManagedInstanceCore minus its
# ssm:GetParameter(s)/ListAssociations/... on every resource). ssm:UpdateInstanceInformation takes
# an instance ARN (Service Authorization Reference, AWS Systems Manager: resource types instance,
# managed-instance), so it is granted on this account's and region's instances only; the
# ssmmessages/ec2messages actions take no resource ARN.
SESSION_MANAGER_INSTANCE_ACTIONS = ("ssm:UpdateInstanceInformation",)
SESSION_MANAGER_ACTIONS = (
    *SESSION_MANAGER_INSTANCE_ACTIONS,
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
    "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
)


def host_policy(*, parameter_arn_prefix: str, kms_key_arn: str, region: str, log_group_arn: str,
                admin_secret_arn: str, app_secret_arn: str, instance_arn_pattern: str, metric_namespace: str,
                dns_suffix: str = "amazonaws.com") -> str:
    """Least privilege for a host: read its own parameters, decrypt them via SSM only, write
    EMF logs to its one log group, read the admin secret (the TLS renewal timer reloads TLS with
    CONFIG SET as admin), publish its own namespace's metrics, and Session Manager (no SSH) -
    nothing that reads other parameters or secrets. kms:ViaService names the service endpoint,
    `<service>.<region>.<the partition's DNS suffix>`."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadOwnParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"],
         "Resource": f"{parameter_arn_prefix}/*"},
        {"Sid": "DecryptThroughSsmOnly", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": kms_key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.{dns_suffix}"}}},
        {"Sid": "ReadAdminSecretForTlsReload", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": admin_secret_arn},
        # First boot writes the current (possibly rotated) app password digest into its files.
        {"Sid": "ReadAppSecretAtBoot", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": app_secret_arn},
        {"Sid": "DecryptThroughSecretsManagerOnly", "Effect": "Allow", "Action": ["kms:Decrypt"],
         "Resource": kms_key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.{dns_suffix}"}}},
        {"Sid": "PublishMetricsAsEmf", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": [log_group_arn, f"{log_group_arn}:*"]},
        # PutMetricData has no resource-level permissions; the namespace condition is its scope.
        {"Sid": "PublishTlsDaysLeftInOwnNamespace", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"],
         "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespace}}},
        {"Sid": "SessionManagerRegistersThisAccountsInstances", "Effect": "Allow",
         "Action": list(SESSION_MANAGER_INSTANCE_ACTIONS), "Resource": instance_arn_pattern},
        {"Sid": "SessionManagerOnly", "Effect": "Allow",
         "Action": [a for a in SESSION_MANAGER_ACTIONS if a not in SESSION_MANAGER_INSTANCE_ACTIONS],
         "Resource": "*"},
    ]}, sort_keys=True)


def _password(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    pw = random.RandomPassword(name, length=PASSWORD_LENGTH, special=False, min_upper=2, min_lower=2,
                               min_numeric=2, opts=child(parent))
    return pulumi.Output.secret(pw.result)


class SentinelHosts(pulumi.ComponentResource):
    """Three redis + Sentinel hosts in three AZs, with their network, secrets, backups and alarms."""

    stack_outputs: dict[str, Any]

    def __init__(self, name: str, args: SentinelHostsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:sentinel:SentinelHosts", name, None, opts)
        self._name, self._args = name, args
        tags = dict(args.tags)
        acct = account(self)
        region_name = acct.apply(lambda a: a.region)
        # aws, aws-cn, aws-us-gov: every ARN this component spells out starts with it.
        self._partition = acct.apply(lambda a: a.partition)
        prefix = args.parameter_prefix(name)
        log_group_name = f"{prefix}/metrics"
        topic_name = fixed_name(args.project, args.stack, name, "alarms")

        # Three AZs or nothing: a second host in one AZ makes that AZ's loss a quorum loss.
        subnets = [aws.ec2.get_subnet_output(id=s, opts=pulumi.InvokeOutputOptions(parent=self))
                   for s in args.subnet_ids]
        self.availability_zones = pulumi.Output.all(*[s.availability_zone for s in subnets]).apply(
            lambda azs: _distinct_azs(list(azs), args.subnet_ids))

        # Protected and retained like the data volumes and their DLM snapshots, which it encrypts:
        # `pulumi destroy` would otherwise schedule it for deletion and make them unreadable.
        self.kms_key = customer_kms_key(
            name, self, description=f"redisstack {args.stack}: Redis Sentinel hosts (EBS, SSM parameters, secrets, "
            "log group, alarm topic)", tags=tags, protect=True, retain=True,
            use=key_use(acct, alarm_topic_names=[topic_name],
                        log_group_names=[log_group_name, *args.extra_log_groups.values()]))
        ports = [PortRule(REDIS_PORT, "Redis (TLS)" if args.tls else "Redis"),
                 PortRule(SENTINEL_PORT, "Redis Sentinel")]
        self.security_group, self.ingress, self.egress = redis_security_group(
            name, self, vpc_id=args.vpc_id, ports=ports, source_security_group_ids=args.app_security_group_ids,
            cidrs=args.allowed_cidrs, self_ports=ports,
            description=f"redisstack {args.stack}: Redis + Sentinel, only from the application",
            tags=tags)
        # Hosts fetch packages (apt over HTTPS, see user_data) and the CloudWatch agent and call
        # SSM/CloudWatch Logs over HTTPS; nothing else leaves the group. VPC endpoints plus an
        # internal mirror remove even this (docs/sentinel.md, "Egress").
        self.egress.append(aws.vpc.SecurityGroupEgressRule(
            f"{name}-out-443", security_group_id=self.security_group.id, ip_protocol="tcp", from_port=443,
            to_port=443, cidr_ipv4="0.0.0.0/0", description="HTTPS to package mirrors and AWS APIs",
            tags=tags, opts=child(self)))

        # Fixed interfaces: every rendered file names these IPs.
        self.interfaces = [aws.ec2.NetworkInterface(
            f"{name}-node-{i}-eni", subnet_id=subnet, security_groups=[self.security_group.id],
            description=f"redisstack {args.stack} redis node {i}", tags={**tags, "Name": f"{name}-node-{i}"},
            opts=child(self)) for i, subnet in enumerate(args.subnet_ids)]
        ips = pulumi.Output.all(*[eni.private_ip for eni in self.interfaces])

        passwords = {c: _password(f"{name}-{c}-password", self) for c in CREDENTIALS if c != "app"}
        passwords["app"] = (pulumi.Output.secret(args.app_password) if args.app_password is not None
                            else _password(f"{name}-app-password", self))
        all_passwords = pulumi.Output.all(**passwords)

        files = pulumi.Output.all(ips, all_passwords).apply(
            lambda v: render_host_files(args, list(v[0]), dict(v[1])))
        self.parameters: list[aws.ssm.Parameter] = []
        leaves = list(HOST_FILES)
        if args.tls:
            self.tls_ca = self._tls(ips)
            leaves += list(TLS_HOST_FILES)
        for i in range(NODE_COUNT):
            for leaf in leaves:
                value: pulumi.Output[str] = (files.apply(_pick(i, leaf)) if leaf in HOST_FILES
                                             else self._tls_value(leaf))
                self.parameters.append(aws.ssm.Parameter(
                    f"{name}-node-{i}-{leaf.replace('/', '-').replace('.', '-')}",
                    name=f"{prefix}/node-{i}/{leaf}", type="SecureString", key_id=self.kms_key.arn,
                    value=pulumi.Output.secret(value), tier="Standard",  # type: ignore[arg-type]
                    description=f"redisstack {args.stack} node {i}: {leaf}", tags=tags,
                    # The name is fixed (user data and the IAM policy name the path).
                    opts=child(self, delete_before_replace=True, additional_secret_outputs=["value"])))

        self.log_group = encrypted_log_group(f"{name}-metrics", self, log_group_name=log_group_name,
                                             kms_key_id=self.kms_key.arn, retention_days=args.log_retention_days,
                                             tags=tags)
        self.app_secret, _ = app_secret(f"{name}-app", self, secret_string=passwords["app"],
                                        kms_key_id=self.kms_key.arn, description="Redis application password "
                                        "(REDIS_PASSWORD; also authenticates Sentinel discovery)",
                                        name_prefix=f"{args.project}/{args.stack}/{name}/app-", tags=tags)
        self.admin_secret, _ = app_secret(f"{name}-admin", self, secret_string=passwords["admin"],
                                          kms_key_id=self.kms_key.arn, description="Redis/Sentinel admin password",
                                          name_prefix=f"{args.project}/{args.stack}/{name}/admin-", tags=tags)
        self.role = aws.iam.Role(f"{name}-host-role", assume_role_policy=_assume("ec2.amazonaws.com"),
                                 description="redisstack sentinel hosts", tags=tags, opts=child(self))
        param_arn = acct.apply(lambda a: a.arn("ssm", f"parameter{prefix}"))
        instances_arn = acct.apply(lambda a: a.arn("ec2", "instance/*"))
        self.role_policy = aws.iam.RolePolicy(
            f"{name}-host-policy", role=self.role.id,
            policy=pulumi.Output.all(param_arn, self.kms_key.arn, region_name, self.log_group.arn,
                                     self.admin_secret.arn, acct.apply(lambda a: a.dns_suffix),
                                     self.app_secret.arn, instances_arn).apply(
                lambda v: host_policy(parameter_arn_prefix=v[0], kms_key_arn=v[1], region=v[2], log_group_arn=v[3],
                                      admin_secret_arn=v[4], dns_suffix=v[5], app_secret_arn=v[6],
                                      instance_arn_pattern=v[7], metric_namespace=args.metric_namespace)),
            opts=child(self))
        # Session Manager instead of SSH (no key pair, no port 22) is in host_policy: the managed
        # AmazonSSMManagedInstanceCore would also let a host read every parameter of the account.
        self.profile = aws.iam.InstanceProfile(f"{name}-host-profile", role=self.role.name, tags=tags,
                                               opts=child(self))

        ami = aws.ssm.get_parameter_output(name=args.ami_ssm_parameter, opts=pulumi.InvokeOutputOptions(parent=self))
        backup_tag = f"{args.stack}-{name}"
        # The AMI parameter moves with every Debian point release: the template keeps the AMI it
        # was created with (ignore_changes), and each instance keeps the template version it was
        # launched from, so `pulumi up` never replaces hosts; hosts are rolled one at a time
        # (docs/sentinel.md, "Replacing hosts").
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=ami.value,
            instance_type=args.instance_type,
            # Graviton (t4g and later) are EBS-optimized by default; stated so an instance type
            # without the default still gets dedicated EBS bandwidth (the data volume carries the AOF).
            ebs_optimized="true",
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=self.profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                instance_metadata_tags="disabled"),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(device_name="/dev/xvda", ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    encrypted="true", kms_key_id=self.kms_key.arn, volume_size=16, volume_type="gp3",
                    delete_on_termination="true")),
            ],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            # Root volumes only (the data volumes are their own resources below): not backed up.
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags=tags)],
            update_default_version=True,
            tags=tags,
            opts=child(self, ignore_changes=["imageId"]))

        # Data volumes outlive their instances: a replaced (or terminated) host leaves its data
        # behind, the replacement is attached to the same volume. Protected and retained even
        # when removed from the program; DLM snapshots them (backup tag).
        self.data_volumes: list[aws.ebs.Volume] = []
        for i, subnet in enumerate(subnets):
            self.data_volumes.append(aws.ebs.Volume(
                f"{name}-node-{i}-data",
                availability_zone=subnet.availability_zone, size=args.data_volume_gib, type="gp3",
                encrypted=True, kms_key_id=self.kms_key.arn,
                tags={**tags, "Name": f"{name}-node-{i}-data", "redisstack-node": f"node-{i}",
                      "redisstack-backup": backup_tag},
                opts=child(self, protect=True, retain_on_delete=True)))

        self.instances: list[aws.ec2.Instance] = []
        self.attachments: list[aws.ec2.VolumeAttachment] = []
        # A number, not "$Latest": "$Latest" re-resolves on every up and replaces all three hosts
        # at once when the template changes.
        lt_version = self.launch_template.latest_version.apply(lambda v: str(v))
        for i, (eni, volume) in enumerate(zip(self.interfaces, self.data_volumes, strict=True)):
            node = f"node-{i}"
            ud = pulumi.Output.all(region_name, eni.private_ip, self.log_group.name, volume.id,
                                   self.admin_secret.arn, acct.apply(lambda a: a.dns_suffix),
                                   self.app_secret.arn).apply(
                _user_data_for(args, prefix, node))
            inst = aws.ec2.Instance(
                f"{name}-{node}",
                launch_template=aws.ec2.InstanceLaunchTemplateArgs(id=self.launch_template.id, version=lt_version),
                primary_network_interface=aws.ec2.InstancePrimaryNetworkInterfaceArgs(network_interface_id=eni.id),
                # gzip+base64 (infra/user_data.py): the script alone outgrew EC2's 16 KB.
                user_data_base64=ud,
                user_data_replace_on_change=False,
                tags={**tags, "Name": f"{name}-{node}", "redisstack-node": node},
                # Replacing a node is an operator's decision, one host at a time (docs/sentinel.md),
                # never a side effect of `up`: a new template version would replace the host, and a
                # changed user data (read at first boot only) would stop and start all three.
                # Delete before replace: the ENI is the instance's primary interface (device index
                # 0), which can be neither detached nor attached to a second instance, so the new
                # instance can only launch on it once the old one is terminated
                # (InvalidNetworkInterface.InUse otherwise; EC2 API InstanceNetworkInterfaceSpecification).
                # The ENI itself survives: one given at launch is never deleted on termination.
                # userData too: hosts launched before the script went gzip+base64 hold it there,
                # and its removal must not reach them either.
                opts=child(self, depends_on=[*self.parameters, self.role_policy],
                           ignore_changes=["launchTemplate", "userDataBase64", "userData"],
                           delete_before_replace=True))
            self.instances.append(inst)
            self.attachments.append(aws.ec2.VolumeAttachment(
                f"{name}-{node}-data-attachment", device_name=DATA_DEVICE, volume_id=volume.id,
                instance_id=inst.id,
                # Stop the old host before its volume moves (Redis flushes on SIGTERM); the volume
                # can be attached to one instance at a time, so detach before attaching anew.
                stop_instance_before_detaching=True,
                opts=child(self, delete_before_replace=True)))

        self.dlm = self._backups(backup_tag, tags)
        self.topic, self.subscription = alarm_topic(name, self, topic_name=topic_name, kms_key_id=self.kms_key.arn,
                                                    acct=acct, email=args.alarm_email, tags=tags)
        self.alarms = self._alarms(region_name, tags)

        endpoints = ips.apply(lambda v: [f"{ip}:{SENTINEL_PORT}" for ip in v])
        url = ips.apply(lambda v: sentinel_url([(ip, SENTINEL_PORT) for ip in v], MASTER_NAME, tls=args.tls))
        env = pulumi.Output.all(url, passwords["app"], self.app_secret.arn).apply(lambda v: {
            **env_contract(url=v[0], password=v[1], tls=args.tls, timeout_ms=args.timeout_ms, tiers=args.tiers,
                           enabled=args.enabled, rate_limit_mode=args.rate_limit_mode, password_secret_arn=v[2]),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            # Sentinels' default user authenticates with the application's password (discovery
            # only); spelled out so clients set sentinel_kwargs={"password": ...}.
            "REDIS_SENTINEL_PASSWORD": v[1],
        })
        self.stack_outputs = {
            "env": pulumi.Output.secret(env),
            "sentinelUrl": url,
            "sentinelEndpoints": endpoints,
            "masterName": MASTER_NAME,
            "redisNodes": ips.apply(lambda v: [f"{ip}:{REDIS_PORT}" for ip in v]),
            "availabilityZones": self.availability_zones,
            "instanceIds": [inst.id for inst in self.instances],
            "securityGroupId": self.security_group.id,
            "appSecretArn": self.app_secret.arn,
            # For redisops (backup/restore/failover drills); also in Secrets Manager.
            "adminPassword": pulumi.Output.secret(passwords["admin"]),
            "sentinelPassword": pulumi.Output.secret(passwords["app"]),
            "adminSecretArn": self.admin_secret.arn,
            "alarmTopicArn": self.topic.arn,
            "kmsKeyArn": self.kms_key.arn,
            # Every log group the stack encrypts with this key (`redisops key-policy` reads them).
            "logGroups": {"metrics": self.log_group.name,
                          **args.extra_log_groups},
            "parameterPrefix": prefix,
            "metricNamespace": args.metric_namespace,
            "tls": args.tls,
            "sentinelTuning": {"quorum": args.tuning.quorum, "downAfterMs": args.tuning.down_after_ms,
                               "failoverTimeoutMs": args.tuning.failover_timeout_ms,
                               "parallelSyncs": args.tuning.parallel_syncs,
                               "minReplicasToWrite": args.tuning.min_replicas_to_write,
                               "minReplicasMaxLag": args.tuning.min_replicas_max_lag},
        }
        if args.tls:
            self.stack_outputs["caCertPem"] = self.tls_ca
        self.register_outputs(self.stack_outputs)

    # -- children ---------------------------------------------------------------------------
    def _tls(self, ips: pulumi.Output[list[Any]]) -> pulumi.Output[str]:
        name = self._name
        c = child(self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=c)
        ca = tls.SelfSignedCert(f"{name}-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
                                validity_period_hours=24 * 365 * 5, early_renewal_hours=24 * 60,
                                subject=tls.SelfSignedCertSubjectArgs(common_name=f"redisstack {self._args.stack} CA"),
                                allowed_uses=["cert_signing", "crl_signing", "digital_signature"], opts=c)
        key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=c)
        csr = tls.CertRequest(f"{name}-server-csr", private_key_pem=key.private_key_pem,
                              subject=tls.CertRequestSubjectArgs(common_name="redis"),
                              ip_addresses=ips.apply(lambda v: [str(x) for x in v]), opts=c)
        cert = tls.LocallySignedCert(f"{name}-server", cert_request_pem=csr.cert_request_pem,
                                     ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca.cert_pem,
                                     validity_period_hours=24 * 365, early_renewal_hours=24 * 30,
                                     # client_auth: replicas and Sentinel present it on outgoing links.
                                     allowed_uses=["digital_signature", "key_encipherment", "server_auth",
                                                   "client_auth"], opts=c)
        self._tls_values: dict[str, pulumi.Output[str]] = {
                            "tls/server.key": pulumi.Output.secret(key.private_key_pem),
                            "tls/server.crt": cert.cert_pem, "tls/ca.crt": ca.cert_pem}
        return ca.cert_pem

    def _tls_value(self, leaf: str) -> pulumi.Output[str]:
        return self._tls_values[leaf]

    def _backups(self, backup_tag: str, tags: dict[str, str]) -> aws.dlm.LifecyclePolicy:
        role = aws.iam.Role(f"{self._name}-dlm-role", assume_role_policy=_assume("dlm.amazonaws.com"), tags=tags,
                            opts=child(self))
        aws.iam.RolePolicyAttachment(
            f"{self._name}-dlm-policy", role=role.name,
            policy_arn=self._partition.apply(
                lambda p: f"arn:{p}:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"),
            opts=child(self))
        start = self._args.backup_window.split("-")[0]
        return aws.dlm.LifecyclePolicy(
            f"{self._name}-snapshots",
            description=dlm_description(f"redisstack {self._args.stack} {self._name} data volumes"),
            execution_role_arn=role.arn, state="ENABLED",
            policy_details=aws.dlm.LifecyclePolicyPolicyDetailsArgs(
                resource_types=["VOLUME"],
                target_tags={"redisstack-backup": backup_tag},
                schedules=[aws.dlm.LifecyclePolicyPolicyDetailsScheduleArgs(
                    name="daily",
                    create_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleCreateRuleArgs(
                        interval=24, interval_unit="HOURS", times=start),
                    retain_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleRetainRuleArgs(
                        count=self._args.backup_retention_days),
                    copy_tags=True,
                    tags_to_add={"redisstack-snapshot": backup_tag})]),
            tags=tags, opts=child(self))

    def _alarms(self, region: pulumi.Output[str], tags: dict[str, str]) -> list[aws.cloudwatch.MetricAlarm]:
        alarms: list[aws.cloudwatch.MetricAlarm] = []
        topic = self.topic.arn
        for i, inst in enumerate(self.instances):
            node = f"node-{i}"
            # A failed host is recovered onto new hardware with the same ENI, volumes and IP.
            alarms.append(aws.cloudwatch.MetricAlarm(
                f"{self._name}-{node}-system-check",
                alarm_description=f"{node}: EC2 system status check failed; instance auto-recovers",
                namespace="AWS/EC2", metric_name="StatusCheckFailed_System", dimensions={"InstanceId": inst.id},
                statistic="Maximum", period=60, evaluation_periods=2, threshold=0,
                comparison_operator="GreaterThanThreshold", treat_missing_data="missing",
                alarm_actions=[pulumi.Output.all(self._partition, region).apply(
                    lambda v: f"arn:{v[0]}:automate:{v[1]}:ec2:recover"), topic],
                ok_actions=[topic], tags={**tags, "severity": "critical"}, opts=child(self)))
            alarms.append(aws.cloudwatch.MetricAlarm(
                f"{self._name}-{node}-instance-check",
                alarm_description=f"{node}: EC2 instance status check failed (OS/boot); Sentinel fails over "
                                  "if it was the primary",
                namespace="AWS/EC2", metric_name="StatusCheckFailed_Instance", dimensions={"InstanceId": inst.id},
                statistic="Maximum", period=60, evaluation_periods=3, threshold=0,
                comparison_operator="GreaterThanThreshold", treat_missing_data="missing",
                alarm_actions=[topic], ok_actions=[topic], tags={**tags, "severity": "critical"},
                opts=child(self)))
            alarms.append(self._boot_refused_alarm(node, tags))
            if self._args.tls:
                alarms.append(self._tls_expiry_alarm(node, tags))
            for t in self._args.thresholds:
                row = CW_ROWS.get(t.name)
                if row is None:
                    continue
                for severity, line in t.lines():
                    alarms.append(self._redis_alarm(node, t, severity, line, row, tags))
        return alarms

    def _boot_refused_alarm(self, node: str, tags: dict[str, str]) -> aws.cloudwatch.MetricAlarm:
        """User data publishes BootRefused when an installed redis package is below its Debian
        floor (infra/components/package_floors.py); the host then runs no redis at all."""
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{node}-boot-refused",
            alarm_description=f"{node}: boot refused, a redis package is below its Debian floor or the release has "
                              "none (infra/versions.py DEBIAN_FLOORS; cloud-init output names the package)",
            namespace=self._args.metric_namespace, metric_name=BOOT_REFUSED_METRIC, dimensions={"node": node}, statistic="Maximum",
            period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
            # Published once per boot: the state holds until the next boot says otherwise.
            treat_missing_data="ignore", alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            tags={**tags, "severity": "critical"}, opts=child(self))

    def _tls_expiry_alarm(self, node: str, tags: dict[str, str]) -> aws.cloudwatch.MetricAlarm:
        """The renewal timer publishes the days left of the certificate the node serves, hourly.
        Below TLS_DAYS_CRITICAL nobody ran `pulumi up` in the renewal window, or the renewal did
        not reach the host; no datapoint for 6 h means the timer itself stopped (breaching)."""
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{node}-tls-expiry",
            alarm_description=f"{node}: the TLS certificate Redis serves expires in less than {TLS_DAYS_CRITICAL} "
                              "days, or the renewal timer stopped reporting (docs/sentinel.md, \"TLS renewal\")",
            namespace=self._args.metric_namespace, metric_name=TLS_DAYS_METRIC, dimensions={"node": node}, statistic="Minimum",
            period=6 * 3600, evaluation_periods=1, threshold=TLS_DAYS_CRITICAL,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching",
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            tags={**tags, "severity": "critical"}, opts=child(self))

    def _redis_alarm(self, node: str, t: Threshold, severity: str, line: float,
                     row: tuple[Kind, tuple[str, ...], str], tags: dict[str, str]) -> aws.cloudwatch.MetricAlarm:
        kind, metrics, stat = row
        periods = max(1, _minutes(t.for_))
        op = "GreaterThanThreshold" if t.direction == "above" else "LessThanThreshold"

        def q(id_: str, metric: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=id_, return_data=False, metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=self._args.metric_namespace, metric_name=metric, dimensions={"node": node}, period=60, stat=stat))

        if kind == "gauge":
            queries = [q("m0", metrics[0]), aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="e", expression="m0", label=t.name, return_data=True)]
        elif kind == "increase":
            queries = [q("m0", metrics[0]), aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="e", expression="m0", label=f"increase of {metrics[0]}", return_data=True)]
        else:
            queries = [q("m0", metrics[0]), q("m1", metrics[1]), aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="e", expression="100 * m0 / m1", label=t.name, return_data=True)]
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{node}-{t.name}-{severity}",
            alarm_description=f"{node}: {t.description} {t.direction} {line:g} {t.unit} ({severity}, "
                              f"thresholds table row {t.name})",
            metric_queries=queries, evaluation_periods=periods, threshold=line, comparison_operator=op,
            treat_missing_data="notBreaching" if t.name in _MISSING_OK else "missing",
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            tags={**tags, "severity": severity, "threshold": t.name}, opts=child(self))


def _pick(i: int, leaf: str) -> Callable[[list[dict[str, str]]], str]:
    return lambda files: files[i][leaf]


def tls_renewal_environment(*, region: str, prefix: str, node: str, ip: str, admin_secret_arn: str,
                            namespace: str) -> str:
    """The renewal timer's EnvironmentFile for one host (names and paths; no secret)."""
    return renew_environment({
        "REGION": region, "PREFIX": f"{prefix}/{node}", "ADMIN_SECRET_ID": admin_secret_arn, "REDIS_HOST": ip,
        "REDIS_PORT": str(REDIS_PORT), "NODE": node, "TLS_DIR": TLS_DIR, "EXPORTER_CA_FILE": EXPORTER_CA_FILE,
        "FILE_OWNER": "redis", "EXPORTER_OWNER": "prometheus", "NAMESPACE": namespace,
        "SENTINEL_UNIT": "redis-sentinel", "SENTINEL_PORT": str(SENTINEL_PORT), "MASTER_NAME": MASTER_NAME,
        "SENTINELS": str(NODE_COUNT)})


def packed_user_data(script: str, node: str) -> str:
    """The script as EC2 gets it (infra/user_data.py); refused here, at preview, when even
    compressed it is over EC2's limit, instead of at launch."""
    packed = pack(script)
    size = raw_size(packed)
    if size > USER_DATA_MAX_BYTES:
        raise ValueError(f"user data of {node}: {size} bytes gzip-compressed ({len(script.encode())} "
                         f"bytes of script); EC2 allows at most {USER_DATA_MAX_BYTES} bytes before base64")
    return packed


def _user_data_for(args: SentinelHostsArgs, prefix: str, node: str) -> Callable[[list[Any]], str]:
    def render(v: list[Any]) -> str:
        region, ip, log_group, data_volume_id, admin_secret_arn, dns_suffix, app_secret_arn = v
        namespace = args.metric_namespace
        renewal = (install_commands(tls_renewal_environment(region=region, prefix=prefix, node=node, ip=ip,
                                                            admin_secret_arn=admin_secret_arn, namespace=namespace))
                   if args.tls else "")
        script = user_data(region=region, prefix=prefix, node=node, tls=args.tls, data_volume_id=data_volume_id,
                           exporter=exporter_args(ip, tls=args.tls), namespace=namespace,
                           agent_config=json.dumps(cloudwatch_agent_config(node, log_group, namespace), indent=1),
                           agent_prometheus=cloudwatch_agent_prometheus(node), tls_renewal=renewal,
                           dns_suffix=dns_suffix,
                           functions_load=functions_load_commands(ip=ip, tls=args.tls, namespace=namespace,
                                                                  admin_secret_arn=admin_secret_arn),
                           current_passwords=current_password_commands(
                               rotated_users(app_secret_arn, admin_secret_arn)))
        return packed_user_data(script, node)
    return render


def rotated_users(app_secret_arn: str, admin_secret_arn: str) -> dict[str, str]:
    """ACL user -> the secret whose AWSCURRENT holds its password (redisops.rotation.SENTINEL_USERS:
    `default` is the app on the nodes and the Sentinels, `admin` the operators)."""
    from redisops.rotation import SENTINEL_USERS

    arns = {"app": app_secret_arn, "admin": admin_secret_arn}
    return {user: arns[credential] for credential, user in SENTINEL_USERS.items()}


def _minutes(duration: str) -> int:
    """Prometheus `for:` ("5m", "1m", "0m", "30s") -> whole CloudWatch minutes."""
    unit = duration[-1]
    n = int(duration[:-1])
    return {"s": max(1, n // 60) if n else 0, "m": n, "h": n * 60}[unit]


def _distinct_azs(azs: list[str], subnet_ids: Sequence[str]) -> list[str]:
    if len(set(azs)) != len(azs):
        raise SettingError("network.subnetIds", list(subnet_ids),
                           f"subnets in {len(azs)} different availability zones (got {', '.join(azs)})")
    return azs
