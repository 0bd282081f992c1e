"""Where redisops connects and with which credentials: one `ConnectionSpec` for every command.

Input, in this order of precedence:

* `--stack-outputs FILE`: the JSON of `pulumi stack output --json --show-secrets`. The env
  contract is the output `env` (a dict of the variables below); `rateLimits`, `expectations`,
  `adminPassword`, `sentinelPassword`, `caCertPem` and `clusterMode` are read when present.
* `--stack NAME`: the same JSON, fetched with the Pulumi CLI.
* the process environment: the guide's REDIS_URL, REDIS_PASSWORD, REDIS_TLS, REDIS_TIMEOUT and
  RATE_LIMIT_<TIER>=limit,window; plus REDIS_USERNAME (ACL user), REDIS_CA_CERT (private CA
  bundle), REDIS_SENTINEL_PASSWORD, REDIS_CLUSTER, and REDIS_ADMIN_USERNAME /
  REDIS_ADMIN_PASSWORD for admin-only operations (backup, restore, health's SLOWLOG).

Rotated credentials: the stack's password outputs (`env`'s REDIS_PASSWORD, `adminPassword`,
`sentinelPassword`) hold what `pulumi up` generated; after an automatic rotation
(redisops/rotation.py) only the secrets hold the current values. With REDISOPS_SECRETS=aws the
passwords are read from the secrets the outputs name (`authSecretArn` / `appSecretArn`,
`adminSecretArn`; their AWSCURRENT version, with the caller's AWS credentials) instead.

Variables that only make sense on the operator's machine (REDIS_CA_CERT, REDIS_ADMIN_*,
REDIS_SENTINEL_PASSWORD) are taken from the process environment when the outputs lack them.

Secrets are held in fields excluded from repr and are never formatted into messages.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ratelimit.tiers import DEFAULT_TIERS, Tier, parse_limit_spec
from redisops.errors import UsageError

Mode = Literal["single", "sentinel", "cluster"]
SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")
URL_HELP = ("expected redis://host:port[/db], rediss://host:port[/db] (TLS) or "
            "redis+sentinel://h1:26379,h2:26379/mymaster (rediss+sentinel:// with TLS)")
BOOL_HELP = "expected true or false (also 1/0, yes/no)"
LOCAL_ONLY = ("REDIS_CA_CERT", "REDIS_ADMIN_USERNAME", "REDIS_ADMIN_PASSWORD", "REDIS_SENTINEL_PASSWORD")
# Not a tier: the guide's switch between the Redis and the in-memory limiter.
NOT_TIERS = frozenset({"RATE_LIMIT_MODE"})
DEFAULT_TIMEOUT_MS = 5000  # the guide's REDIS_TIMEOUT default


@dataclass(frozen=True)
class Expectations:
    """What the stack declares and the smoke test holds the server to (None: not checked)."""

    maxmemory_policy: str | None = None
    aof: bool | None = None
    maxmemory: int | None = None  # bytes
    source: str = "none"

    def declares(self) -> bool:
        return any(v is not None for v in (self.maxmemory_policy, self.aof, self.maxmemory))

    def merged(self, other: Expectations) -> Expectations:
        """Fields set here win; the rest come from `other`."""
        return Expectations(
            maxmemory_policy=self.maxmemory_policy if self.maxmemory_policy is not None else other.maxmemory_policy,
            aof=self.aof if self.aof is not None else other.aof,
            maxmemory=self.maxmemory if self.maxmemory is not None else other.maxmemory,
            source=", ".join(e.source for e in (self, other) if e.source != "none" and e.declares()) or "none",
        )


@dataclass(frozen=True)
class ConnectionSpec:
    mode: Mode
    hosts: tuple[tuple[str, int], ...]  # the server; the Sentinels; or cluster seed nodes
    tls: bool
    timeout_ms: int
    tiers: tuple[Tier, ...]
    source: str
    db: int = 0
    master_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    insecure_skip_verify: bool = False
    sentinel_password: str | None = field(default=None, repr=False)
    admin_username: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    tiers_source: str = "environment"
    expectations: Expectations = field(default_factory=Expectations)

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000.0

    @property
    def display_url(self) -> str:
        """The endpoint without any credential, for reports and logs."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.mode == "sentinel":
            return f"{'rediss' if self.tls else 'redis'}+sentinel://{hosts}/{self.master_name}"
        user = f"{self.username}@" if self.username else ""
        scheme = "rediss" if self.tls else "redis"
        suffix = " (cluster)" if self.mode == "cluster" else ""
        return f"{scheme}://{user}{hosts}/{self.db}{suffix}"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.sentinel_password, self.admin_password) if s)


# --- parsing ---------------------------------------------------------------------------------

def parse_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise UsageError(f"{name}={value!r}: {BOOL_HELP}")


def _port(name: str, text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"{name}: port {text!r} is not a number from 1 to 65535; {URL_HELP}")
    return int(text)


def _host_ports(name: str, netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    out = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            raise UsageError(f"{name}: empty host in the host list; {URL_HELP}")
        if part.startswith("["):  # [ipv6]:port
            host, _, rest = part[1:].partition("]")
            port = _port(name, rest.lstrip(":"), default_port)
        else:
            host, _, p = part.rpartition(":") if ":" in part else (part, "", "")
            port = _port(name, p, default_port)
        if not host:
            raise UsageError(f"{name}: missing host before the port; {URL_HELP}")
        out.append((host, port))
    return tuple(out)


@dataclass(frozen=True)
class ParsedUrl:
    mode: Mode
    hosts: tuple[tuple[str, int], ...]
    tls: bool
    db: int
    master_name: str | None
    username: str | None
    password: str | None = field(repr=False)


def parse_url(url: str, name: str = "REDIS_URL") -> ParsedUrl:
    if not url or "://" not in url:
        raise UsageError(f"{name} is {'missing' if not url else 'not a URL'}; {URL_HELP}")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"{name}: scheme {scheme!r} is not supported; {URL_HELP}")
    tls = scheme.startswith("rediss")
    # The last '@' ends the credentials: a password may hold '/', ':' or '@' (then it is not the path).
    rest = rest.split("?", 1)[0]
    userinfo, _, hostpart = rest.rpartition("@")
    netloc, _, path = hostpart.partition("/")
    username = password = None
    if userinfo:
        user, sep, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if sep else None
    if scheme.endswith("+sentinel"):
        hosts = _host_ports(name, netloc, 26379)
        master = path.strip("/")
        if not master:
            raise UsageError(f"{name}: the Sentinel master name is missing (…/mymaster); {URL_HELP}")
        return ParsedUrl("sentinel", hosts, tls, 0, master, username, password)
    hosts = _host_ports(name, netloc, 6379)
    if len(hosts) != 1:
        raise UsageError(f"{name}: one host expected for {scheme}://, got {len(hosts)}; {URL_HELP}")
    db_text = path.strip("/") or "0"
    if not db_text.isdigit():
        raise UsageError(f"{name}: database {db_text!r} is not a number; {URL_HELP}")
    return ParsedUrl("single", hosts, tls, int(db_text), None, username, password)


def parse_tiers(env: Mapping[str, str], known: tuple[Tier, ...] = DEFAULT_TIERS) -> tuple[Tier, ...]:
    """RATE_LIMIT_<NAME>=limit,window -> Tiers; algorithm and failure policy come from `known`."""
    by_name = {t.name: t for t in known}
    tiers = []
    for key in sorted(env):
        if not key.startswith("RATE_LIMIT_") or key in NOT_TIERS:
            continue
        name = key[len("RATE_LIMIT_"):].lower()
        try:
            limit, window = parse_limit_spec(str(env[key]))
        except ValueError as exc:
            raise UsageError(f"{key}={env[key]!r}: {exc}") from None
        base = by_name.get(name)
        try:
            if base is None:
                tiers.append(Tier(name, limit, window))
            else:
                tiers.append(replace(base, limit=limit, window_s=window))
        except ValueError as exc:
            raise UsageError(f"{key}: {exc}") from None
    # Keep the table's order (general, auth, ...) so reports read like the guide.
    order = {t.name: i for i, t in enumerate(known)}
    return tuple(sorted(tiers, key=lambda t: (order.get(t.name, len(order)), t.name)))


def tiers_from_outputs(rate_limits: Any) -> tuple[Tier, ...]:
    """The `rateLimits` stack output: {name: {limit, windowSeconds, algorithm, failOpen}}."""
    if not isinstance(rate_limits, Mapping):
        raise UsageError("stack output rateLimits: expected {name: {limit, windowSeconds, algorithm, failOpen}}")
    tiers = []
    for name, spec in rate_limits.items():
        try:
            tiers.append(Tier(str(name), int(spec["limit"]), int(spec["windowSeconds"]),
                              spec.get("algorithm", "gcra"), fail_open=bool(spec.get("failOpen", False)),
                              burst=spec.get("burst")))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"stack output rateLimits.{name}: {exc}; expected "
                             "{limit, windowSeconds, algorithm, failOpen}") from None
    return tuple(tiers)


def expectations_from_outputs(value: Any) -> Expectations:
    """The `expectations` stack output: {maxmemoryPolicy, appendonly, maxmemoryBytes}."""
    if value is None:
        return Expectations()
    if not isinstance(value, Mapping):
        raise UsageError("stack output expectations: expected {maxmemoryPolicy, appendonly, maxmemoryBytes}")
    aof = value.get("appendonly")
    mm = value.get("maxmemoryBytes")
    return Expectations(
        maxmemory_policy=value.get("maxmemoryPolicy"),
        aof=None if aof is None else (parse_bool("expectations.appendonly", aof) if isinstance(aof, str) else bool(aof)),
        maxmemory=None if mm is None else int(mm),
        source="stack outputs",
    )


def spec_from_env(env: Mapping[str, str], *, source: str = "environment",
                  known_tiers: tuple[Tier, ...] | None = None, insecure_skip_verify: bool = False,
                  cluster: bool | None = None, expectations: Expectations | None = None) -> ConnectionSpec:
    url = env.get("REDIS_URL", "")
    if not url:
        raise UsageError(f"REDIS_URL is not set ({source}); {URL_HELP}. "
                         "Or pass --stack-outputs FILE / --stack NAME.")
    parsed = parse_url(url)
    tls_var = env.get("REDIS_TLS")
    tls = parsed.tls
    if tls_var is not None and tls_var != "":
        wanted = parse_bool("REDIS_TLS", tls_var)
        if parsed.tls and not wanted:
            raise UsageError("REDIS_TLS=false contradicts REDIS_URL's rediss:// scheme; "
                             "expected REDIS_TLS=true with rediss:// (or a redis:// URL)")
        tls = tls or wanted
    timeout_text = env.get("REDIS_TIMEOUT", "") or str(DEFAULT_TIMEOUT_MS)
    if not timeout_text.strip().isdigit() or not 0 < int(timeout_text) <= 600_000:
        raise UsageError(f"REDIS_TIMEOUT={timeout_text!r}: expected milliseconds, an integer from 1 to 600000")
    ca = env.get("REDIS_CA_CERT") or None
    if ca is not None and not Path(ca).is_file():
        raise UsageError(f"REDIS_CA_CERT={ca!r}: expected the path of a readable PEM CA bundle; no such file")
    if ca is not None and not tls:
        raise UsageError("REDIS_CA_CERT is set but TLS is off: expected REDIS_TLS=true or a rediss:// URL")
    password = env.get("REDIS_PASSWORD") or parsed.password
    username = env.get("REDIS_USERNAME") or parsed.username
    is_cluster = cluster if cluster is not None else parse_bool("REDIS_CLUSTER", env.get("REDIS_CLUSTER", "false"))
    mode: Mode = parsed.mode
    if is_cluster:
        if mode == "sentinel":
            raise UsageError("REDIS_CLUSTER=true cannot be combined with a redis+sentinel:// REDIS_URL; "
                             "expected a redis:// or rediss:// seed node")
        mode = "cluster"
    known = known_tiers or DEFAULT_TIERS
    tiers = parse_tiers(env, known)
    tiers_source = source
    if not tiers:
        tiers, tiers_source = known, ("stack outputs rateLimits" if known_tiers else "built-in defaults (guide)")
    return ConnectionSpec(
        mode=mode, hosts=parsed.hosts, tls=tls, timeout_ms=int(timeout_text), tiers=tiers, source=source,
        db=parsed.db, master_name=parsed.master_name, username=username, password=password, ca_cert=ca,
        insecure_skip_verify=insecure_skip_verify, sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
        admin_username=env.get("REDIS_ADMIN_USERNAME") or "admin",
        admin_password=env.get("REDIS_ADMIN_PASSWORD") or None, tiers_source=tiers_source,
        expectations=expectations or Expectations(),
    )


def spec_from_outputs(outputs: Mapping[str, Any], *, source: str, environ: Mapping[str, str] | None = None,
                      insecure_skip_verify: bool = False) -> ConnectionSpec:
    env_out = outputs.get("env")
    if not isinstance(env_out, Mapping):
        raise UsageError(f"{source}: no `env` output (expected a dict of REDIS_URL, REDIS_PASSWORD, REDIS_TLS, "
                         f"REDIS_TIMEOUT, RATE_LIMIT_*); outputs present: {', '.join(sorted(outputs)) or 'none'}")
    env = {str(k): "" if v is None else str(v) for k, v in env_out.items()}
    if "[secret]" in (env.get("REDIS_PASSWORD") or ""):
        raise UsageError(f"{source}: REDIS_PASSWORD is masked as [secret]; expected the JSON of "
                         "`pulumi stack output --json --show-secrets`")
    environ = os.environ if environ is None else environ
    extras = {"REDIS_ADMIN_PASSWORD": outputs.get("adminPassword"),
              "REDIS_SENTINEL_PASSWORD": outputs.get("sentinelPassword")}
    for key, value in extras.items():
        if value and not env.get(key):
            env[key] = str(value)
    for key in LOCAL_ONLY:
        if not env.get(key) and environ.get(key):
            env[key] = environ[key]
    ca_path = env.get("REDIS_CA_CERT")
    if (not ca_path or not Path(ca_path).is_file()) and outputs.get("caCertPem"):
        env["REDIS_CA_CERT"] = write_ca_bundle(str(outputs["caCertPem"]))
    known = tiers_from_outputs(outputs["rateLimits"]) if "rateLimits" in outputs else None
    cluster = bool(outputs["clusterMode"]) if "clusterMode" in outputs else None
    return spec_from_env(env, source=source, known_tiers=known, insecure_skip_verify=insecure_skip_verify,
                         cluster=cluster, expectations=expectations_from_outputs(outputs.get("expectations")))


def write_ca_bundle(pem: str) -> str:
    """The stack's CA certificate as a file for ssl (removed when the process exits)."""
    fd, path = tempfile.mkstemp(prefix="redisops-ca-", suffix=".pem")
    atexit.register(_remove_file, path)
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)
    return path


def _remove_file(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def load_outputs_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--stack-outputs {path}: no such file; expected the JSON of "
                         "`pulumi stack output --json --show-secrets`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--stack-outputs {path}: not readable JSON ({type(exc).__name__}: {exc}); expected the "
                         "JSON of `pulumi stack output --json --show-secrets`") from None
    if not isinstance(data, dict):
        raise UsageError(f"--stack-outputs {path}: expected a JSON object of stack outputs")
    return data


def pulumi_outputs(stack: str) -> dict[str, Any]:
    exe = shutil.which("pulumi")
    if exe is None:
        raise UsageError(f"--stack {stack}: the Pulumi CLI is not installed (no `pulumi` on PATH). Where it is, run "
                         f"`pulumi stack output --json --show-secrets --stack {stack} > outputs.json` and pass "
                         "--stack-outputs outputs.json")
    try:
        proc = subprocess.run([exe, "stack", "output", "--json", "--show-secrets", "--stack", stack],
                              capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"--stack {stack}: `pulumi stack output` did not answer within 120 s") from None
    if proc.returncode != 0:
        raise UsageError(f"--stack {stack}: `pulumi stack output` failed: {proc.stderr.strip()[:500]}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise UsageError(f"--stack {stack}: `pulumi stack output --json` printed no JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"--stack {stack}: expected a JSON object of stack outputs")
    return data


def settings_expectations(path: Path) -> tuple[Expectations, tuple[Tier, ...], Any]:
    """Expectations, tiers and thresholds of a committed stack file (`Pulumi.<stack>.yaml`)."""
    settings, _ = stack_file_settings(path)
    conf = settings.redis_conf
    managed = settings.target == "elasticache"
    exp = Expectations(
        maxmemory_policy=conf.get("maxmemory-policy"),
        # ElastiCache has no AOF (durability is Multi-AZ + snapshots): INFO shows it off.
        aof=False if managed else bool(conf.get("appendonly")),
        maxmemory=None if managed else conf.get("maxmemory"),
        source=f"settings {Path(path).name}",
    )
    return exp, settings.tiers, settings.thresholds


def stack_file_settings(path: Path) -> tuple[Any, dict[str, Any]]:
    """The validated Settings of a committed stack file (`Pulumi.<stack>.yaml`) and its whole
    `config:` mapping (other namespaces too, e.g. aws:region)."""
    import yaml

    from infra.errors import NAMESPACE, SettingsErrors
    from infra.settings import parse_settings

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UsageError(f"--settings {path}: no such file; expected a Pulumi.<stack>.yaml") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--settings {path}: not readable YAML ({exc})") from None
    config = doc.get("config") or {}
    if not isinstance(config, Mapping):
        raise UsageError(f"--settings {path}: expected a `config:` mapping")
    prefix = f"{NAMESPACE}:"
    raw, secrets = {}, set()
    for key, value in config.items():
        if not str(key).startswith(prefix):
            continue
        short = str(key)[len(prefix):]
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secrets.add(short)
            value = "x" * 32  # an encrypted value; only its presence matters here
        # As the Pulumi engine hands config to the program (and redisops.mockrun to render): text,
        # JSON for anything but a string, so a refused value reads the same in every command.
        raw[short] = value if isinstance(value, str) else json.dumps(value)
    stack = Path(path).stem.split(".", 1)[-1]
    try:
        settings = parse_settings(raw, secret_keys=frozenset(secrets), stack=stack)
    except SettingsErrors as exc:
        raise UsageError(f"--settings {path}: {exc}") from None
    return settings, dict(config)


SECRETS_SOURCE_VARIABLE = "REDISOPS_SECRETS"
SecretFetch = Callable[[str], str]  # secret ARN -> its AWSCURRENT SecretString


def aws_secret_fetch() -> SecretFetch:
    import boto3

    client = boto3.client("secretsmanager")
    return lambda arn: str(client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])


def with_current_secrets(outputs: Mapping[str, Any], fetch: SecretFetch) -> dict[str, Any]:
    """The outputs with every password replaced by the current value of the secret that holds it
    (the app secret also authenticates Sentinel discovery on the Sentinel target)."""
    from redisops.aws import parse_credential

    out = dict(outputs)
    env = dict(out.get("env") or {})
    app_arn = out.get("appSecretArn") or out.get("authSecretArn")
    if app_arn:
        password = parse_credential(str(app_arn), fetch(str(app_arn))).password
        env["REDIS_PASSWORD"] = password
        if env.get("REDIS_SENTINEL_PASSWORD") or out.get("sentinelPassword"):
            env["REDIS_SENTINEL_PASSWORD"] = out["sentinelPassword"] = password
    if out.get("adminSecretArn"):
        out["adminPassword"] = parse_credential(str(out["adminSecretArn"]), fetch(str(out["adminSecretArn"]))).password
    out["env"] = env
    return out


def _outputs_with_secrets(outputs: dict[str, Any], environ: Mapping[str, str],
                          fetch: SecretFetch | None) -> dict[str, Any]:
    source = environ.get(SECRETS_SOURCE_VARIABLE, "outputs")
    if source == "outputs":
        return outputs
    if source != "aws":
        raise UsageError(f"{SECRETS_SOURCE_VARIABLE}={source!r}: expected outputs (the passwords in the stack "
                         "outputs) or aws (the current values of the secrets they name)")
    return with_current_secrets(outputs, fetch or aws_secret_fetch())


def resolve(*, stack_outputs: Path | None = None, stack: str | None = None, environ: Mapping[str, str] | None = None,
            insecure_skip_verify: bool = False, settings_file: Path | None = None,
            flag_expectations: Expectations | None = None, secret_fetch: SecretFetch | None = None) -> ConnectionSpec:
    """The connection for a command from its flags and the environment (UsageError on bad input)."""
    environ = os.environ if environ is None else environ
    if stack_outputs is not None and stack is not None:
        raise UsageError("--stack-outputs and --stack are alternatives; expected one of them")
    settings_exp = Expectations()
    settings_tiers: tuple[Tier, ...] | None = None
    if settings_file is not None:
        settings_exp, settings_tiers, _ = settings_expectations(settings_file)
    if stack_outputs is not None:
        spec = spec_from_outputs(_outputs_with_secrets(load_outputs_file(stack_outputs), environ, secret_fetch),
                                 source=f"stack outputs {stack_outputs}", environ=environ,
                                 insecure_skip_verify=insecure_skip_verify)
    elif stack is not None:
        spec = spec_from_outputs(_outputs_with_secrets(pulumi_outputs(stack), environ, secret_fetch),
                                 source=f"stack {stack}", environ=environ, insecure_skip_verify=insecure_skip_verify)
    else:
        spec = spec_from_env(environ, insecure_skip_verify=insecure_skip_verify, known_tiers=settings_tiers)
    exp = (flag_expectations or Expectations()).merged(spec.expectations).merged(settings_exp)
    return replace(spec, expectations=exp)


# --- clients ---------------------------------------------------------------------------------

def tls_kwargs(spec: ConnectionSpec) -> dict[str, Any]:
    if not spec.tls:
        return {}
    kw: dict[str, Any] = {"ssl": True}
    if spec.insecure_skip_verify:
        kw.update(ssl_cert_reqs="none", ssl_check_hostname=False)
    else:
        kw.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if spec.ca_cert:
            kw["ssl_ca_certs"] = spec.ca_cert
    return kw


def base_kwargs(spec: ConnectionSpec, timeout: float | None = None) -> dict[str, Any]:
    t = spec.timeout_s if timeout is None else timeout
    # No retries: an ops tool must report a failure, not hide it behind redis-py's 10 retries.
    return {"socket_timeout": t, "socket_connect_timeout": t, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0, **tls_kwargs(spec)}


Role = Literal["app", "admin", "anonymous"]


def credentials(spec: ConnectionSpec, role: Role) -> tuple[str | None, str | None]:
    if role == "app":
        return spec.username, spec.password
    if role == "admin":
        if not spec.admin_password:
            raise UsageError("REDIS_ADMIN_PASSWORD is not set: this operation needs the admin ACL user "
                             "(REDIS_ADMIN_USERNAME, default 'admin'); expected its password in the environment "
                             "or the stack output adminPassword")
        return spec.admin_username, spec.admin_password
    return None, None


def sentinel_for(spec: ConnectionSpec, timeout: float | None = None) -> Any:
    from redis.sentinel import Sentinel

    kw = base_kwargs(spec, timeout)
    sentinel_kwargs = {**kw}
    if spec.sentinel_password:
        sentinel_kwargs["password"] = spec.sentinel_password
    return Sentinel(list(spec.hosts), sentinel_kwargs=sentinel_kwargs, **kw)


def primary_address(spec: ConnectionSpec, timeout: float | None = None) -> tuple[str, int]:
    """The address that answers writes: the server, Sentinel's current master, or the first seed."""
    if spec.mode != "sentinel":
        return spec.hosts[0]
    s = sentinel_for(spec, timeout)
    try:
        host, port = s.discover_master(spec.master_name)
    finally:
        for c in s.sentinels:
            c.close()
    return str(host), int(port)


def client(spec: ConnectionSpec, role: Role = "app", *, timeout: float | None = None,
           extra: Mapping[str, Any] | None = None) -> Any:
    """A redis-py client for the whole deployment (Sentinel-managed or cluster-aware)."""
    username, password = credentials(spec, role)
    kw = {**base_kwargs(spec, timeout), "username": username, "password": password, **(extra or {})}
    if spec.mode == "sentinel":
        sentinel = sentinel_for(spec, timeout)
        master = sentinel.master_for(spec.master_name, db=spec.db, **kw)
        close_master = master.close

        def close() -> None:  # the Sentinel connections go with the client (also on __exit__/__del__)
            try:
                close_master()
            finally:
                for c in sentinel.sentinels:
                    c.close()

        master.close = close  # type: ignore[method-assign]
        return master
    host, port = spec.hosts[0]
    if spec.mode == "cluster":
        from redis.cluster import RedisCluster

        kw.pop("health_check_interval", None)
        # `retry` is RedisCluster's own parameter (not a node kwarg): without it, 10 retries with backoff.
        return RedisCluster(host=host, port=port, retry=kw.pop("retry"), **kw)
    return redis.Redis(host=host, port=port, db=spec.db, **kw)


def node_client(spec: ConnectionSpec, address: tuple[str, int], role: Role = "app", *,
                timeout: float | None = None, **extra: Any) -> redis.Redis:
    """A plain client for one node (probes, INFO of that node)."""
    username, password = credentials(spec, role)
    return redis.Redis(host=address[0], port=address[1], db=0 if spec.mode == "cluster" else spec.db,
                       username=username, password=password, **{**base_kwargs(spec, timeout), **extra})


def raw_connection(spec: ConnectionSpec, address: tuple[str, int], role: Role = "app", *,
                   timeout: float | None = None) -> redis.connection.AbstractConnection:
    """One connection on which commands are sent and read one by one (MULTI probes)."""
    username, password = credentials(spec, role)
    kw = base_kwargs(spec, timeout)
    kw.pop("health_check_interval", None)
    conn_cls: type[redis.connection.Connection] = (
        redis.connection.SSLConnection if kw.pop("ssl", False) else redis.connection.Connection)
    # RESP2: a RESP3 connection starts with HELLO, which an anonymous client cannot send.
    conn = conn_cls(host=address[0], port=address[1], username=username, password=password, protocol=2, **kw)
    conn.connect()
    return conn


def speaks_plain_redis(address: tuple[str, int], timeout: float) -> bool:
    """True when a plaintext PING gets a Redis reply: the server does not speak TLS there."""
    try:
        with socket.create_connection(address, timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-DENIED"))


def redact(text: str, spec: ConnectionSpec | None = None, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every known secret replaced; used on every message that may echo server text."""
    for s in (*(spec.secrets() if spec else ()), *secrets):
        if s:
            text = text.replace(s, "****")
    return text
