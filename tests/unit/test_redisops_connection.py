"""Connection input for every redisops command: env, stack outputs, settings; each bad input is a
UsageError (exit 2) naming the variable or flag and what is expected; secrets never leak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratelimit.tiers import DEFAULT_TIERS
from redisops import connection as rc
from redisops.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
PW = "app-password-0123456789"


def env(**kw: str) -> dict[str, str]:
    return {"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_PASSWORD": PW, **kw}


@pytest.mark.parametrize(("url", "mode", "hosts", "tls", "db", "master"), [
    ("redis://cache:6379", "single", (("cache", 6379),), False, 0, None),
    ("rediss://cache.example.com:6380/2", "single", (("cache.example.com", 6380),), True, 2, None),
    ("redis://10.0.0.1", "single", (("10.0.0.1", 6379),), False, 0, None),
    ("redis://[::1]:7000/1", "single", (("::1", 7000),), False, 1, None),
    ("redis+sentinel://h1:26379,h2:26380,h3/mymaster", "sentinel",
     (("h1", 26379), ("h2", 26380), ("h3", 26379)), False, 0, "mymaster"),
    ("rediss+sentinel://s1:26379/rl", "sentinel", (("s1", 26379),), True, 0, "rl"),
])
def test_parse_url(url: str, mode: str, hosts: tuple, tls: bool, db: int, master: str | None) -> None:
    p = rc.parse_url(url)
    assert (p.mode, p.hosts, p.tls, p.db, p.master_name) == (mode, hosts, tls, db, master)


def test_credentials_in_the_url_are_accepted_but_never_displayed() -> None:
    spec = rc.spec_from_env({"REDIS_URL": "redis://app:s3cr%40t-password-xyz@cache:6379/0"})
    assert spec.username == "app" and spec.password == "s3cr@t-password-xyz"
    assert "s3cr" not in spec.display_url and "s3cr" not in repr(spec)
    assert spec.display_url == "redis://app@cache:6379/0"


@pytest.mark.parametrize("url", [
    "redis://app:pa/ss:w0rd-xyz@cache:6379/0",
    "redis://app:pa/ss@w0rd-xyz@cache:6379/0",
    "redis://app:pa:ss/w0rd-xyz@cache:6379/0",
])
def test_a_password_with_slash_colon_or_at_is_parsed_not_taken_for_host_and_port(url: str) -> None:
    spec = rc.spec_from_env({"REDIS_URL": url})
    assert spec.hosts == (("cache", 6379),) and spec.db == 0 and spec.username == "app"
    assert spec.password == url.split("app:", 1)[1].rsplit("@", 1)[0]
    sentinel = rc.parse_url("redis+sentinel://:pa/ss-w0rd@s1:26379,s2/mymaster")
    assert sentinel.password == "pa/ss-w0rd" and sentinel.hosts == (("s1", 26379), ("s2", 26379))
    assert sentinel.master_name == "mymaster"


@pytest.mark.parametrize("tail", ["cache:bad/0", ":6379/0", "a,,b/0", "cache/x", "a:1,b:2/0"])
def test_url_errors_never_echo_the_credentials(tail: str) -> None:
    with pytest.raises(UsageError) as exc:
        rc.spec_from_env({"REDIS_URL": f"redis://appuser:sekretA/sekretB@{tail}"})
    assert "sekret" not in str(exc.value) and "appuser" not in str(exc.value)


@pytest.mark.parametrize(("url", "fragment"), [
    ("", "REDIS_URL is not set"),
    ("cache:6379", "not a URL"),
    ("http://cache:6379", "scheme 'http' is not supported"),
    ("redis://cache:notaport", "port 'notaport'"),
    ("redis://cache:6379/x", "database 'x'"),
    ("redis+sentinel://h1:26379/", "master name is missing"),
    ("redis://a:1,b:2", "one host expected"),
])
def test_bad_urls_name_the_variable_and_the_expected_form(url: str, fragment: str) -> None:
    with pytest.raises(UsageError) as exc:
        rc.spec_from_env({"REDIS_URL": url} if url else {})
    assert fragment in str(exc.value)
    assert "REDIS_URL" in str(exc.value) and "redis://host:port" in str(exc.value)


@pytest.mark.parametrize(("extra", "fragment"), [
    ({"REDIS_TLS": "maybe"}, "REDIS_TLS='maybe': expected true or false"),
    ({"REDIS_TIMEOUT": "5s"}, "REDIS_TIMEOUT='5s': expected milliseconds"),
    ({"REDIS_TIMEOUT": "0"}, "REDIS_TIMEOUT='0'"),
    ({"RATE_LIMIT_AUTH": "30/60"}, "RATE_LIMIT_AUTH='30/60': expected \"<limit>,<window_seconds>\""),
    ({"RATE_LIMIT_AUTH": "0,60"}, "RATE_LIMIT_AUTH='0,60'"),
    ({"REDIS_CA_CERT": "/nonexistent/ca.pem", "REDIS_TLS": "true"}, "REDIS_CA_CERT='/nonexistent/ca.pem'"),
    ({"REDIS_CLUSTER": "perhaps"}, "REDIS_CLUSTER='perhaps'"),
])
def test_bad_variables_are_usage_errors(extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(UsageError) as exc:
        rc.spec_from_env(env(**extra))
    assert fragment in str(exc.value)
    assert UsageError.exit_code == 2


def test_tls_contradiction_and_ca_without_tls(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="REDIS_TLS=false contradicts"):
        rc.spec_from_env(env(REDIS_URL="rediss://c:6379", REDIS_TLS="false"))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(UsageError, match="REDIS_CA_CERT is set but TLS is off"):
        rc.spec_from_env(env(REDIS_CA_CERT=str(ca)))
    spec = rc.spec_from_env(env(REDIS_TLS="true", REDIS_CA_CERT=str(ca)))
    assert spec.tls and spec.ca_cert == str(ca) and spec.display_url.startswith("rediss://")
    kw = rc.tls_kwargs(spec)
    assert kw == {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": str(ca)}
    insecure = rc.spec_from_env(env(REDIS_TLS="true"), insecure_skip_verify=True)
    assert rc.tls_kwargs(insecure) == {"ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False}


def test_tiers_from_env_keep_the_tables_algorithm_and_ignore_rate_limit_mode() -> None:
    spec = rc.spec_from_env(env(RATE_LIMIT_MODE="redis", RATE_LIMIT_MFA="3,30", RATE_LIMIT_GENERAL="100,60",
                                RATE_LIMIT_UPLOADS="7,10"))
    assert [t.name for t in spec.tiers] == ["general", "mfa", "uploads"]
    mfa = next(t for t in spec.tiers if t.name == "mfa")
    assert (mfa.limit, mfa.window_s, mfa.algorithm, mfa.fail_open) == (3, 30, "sliding_log", False)
    uploads = next(t for t in spec.tiers if t.name == "uploads")
    assert (uploads.limit, uploads.window_s, uploads.algorithm) == (7, 10, "gcra")


def test_no_tiers_in_env_means_the_guides_defaults_said_so() -> None:
    spec = rc.spec_from_env(env())
    assert spec.tiers == DEFAULT_TIERS and "defaults" in spec.tiers_source


def test_sentinel_and_cluster_inputs() -> None:
    spec = rc.spec_from_env({"REDIS_URL": "redis+sentinel://s1:26379,s2:26379/mymaster", "REDIS_PASSWORD": PW,
                             "REDIS_SENTINEL_PASSWORD": "sentinel-password-0123"})
    assert spec.mode == "sentinel" and spec.master_name == "mymaster"
    assert spec.sentinel_password == "sentinel-password-0123" and "sentinel-password" not in repr(spec)
    assert rc.spec_from_env(env(REDIS_CLUSTER="true")).mode == "cluster"
    with pytest.raises(UsageError, match="REDIS_CLUSTER=true cannot be combined"):
        rc.spec_from_env({"REDIS_URL": "redis+sentinel://s1/m", "REDIS_CLUSTER": "true"})


def test_cluster_client_gets_no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis.cluster

    seen: dict = {}
    monkeypatch.setattr(redis.cluster, "RedisCluster", lambda **kw: seen.update(kw))
    rc.client(rc.spec_from_env(env(REDIS_CLUSTER="true")))
    retry = seen["retry"]  # RedisCluster's named parameter: absent means 10 retries with backoff
    assert retry and retry.get_retries() == 0 and type(retry._backoff).__name__ == "NoBackoff"
    assert seen["host"] == "127.0.0.1" and "health_check_interval" not in seen


def test_closing_a_sentinel_client_closes_its_sentinel_connections() -> None:
    spec = rc.spec_from_env({"REDIS_URL": "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster", "REDIS_PASSWORD": PW})
    master = rc.client(spec)  # connects nothing yet
    sentinels = master.connection_pool.sentinel_manager.sentinels
    closed: list[int] = []
    for i, s in enumerate(sentinels):
        s.close = lambda i=i: closed.append(i)
    with master:
        pass
    assert sorted(closed) == [0, 1]


def test_ca_bundle_written_from_outputs_is_removed_at_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "from redisops.connection import write_ca_bundle; print(write_ca_bundle('PEM'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    path = Path(proc.stdout.strip())
    assert path.name.startswith("redisops-ca-") and not path.exists()


def write_outputs(tmp_path: Path, outputs: dict) -> Path:
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(outputs))
    return f


def test_stack_outputs_env_rate_limits_expectations_and_ca(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    f = write_outputs(tmp_path, {
        "env": {"REDIS_URL": "rediss://127.0.0.1:6379/0", "REDIS_PASSWORD": PW, "REDIS_TLS": "true",
                "REDIS_TIMEOUT": "2000", "RATE_LIMIT_AUTH": "30,60", "RATE_LIMIT_MODE": "redis"},
        "rateLimits": {"auth": {"limit": 30, "windowSeconds": 60, "algorithm": "sliding_log", "failOpen": False}},
        "expectations": {"maxmemoryPolicy": "allkeys-lru", "appendonly": True, "maxmemoryBytes": 838860800},
        "adminPassword": "admin-password-0123456789",
        "caCertPem": pem,
    })
    spec = rc.resolve(stack_outputs=f, environ={})
    assert spec.source == f"stack outputs {f}" and spec.timeout_ms == 2000 and spec.tls
    assert [(t.name, t.algorithm) for t in spec.tiers] == [("auth", "sliding_log")]
    assert spec.expectations == rc.Expectations("allkeys-lru", True, 838860800, "stack outputs")
    assert spec.admin_password == "admin-password-0123456789"
    assert spec.ca_cert is not None and Path(spec.ca_cert).read_text() == pem


def test_flags_win_over_outputs_which_win_over_settings(tmp_path: Path) -> None:
    f = write_outputs(tmp_path, {"env": env(), "expectations": {"maxmemoryPolicy": "volatile-ttl"}})
    spec = rc.resolve(stack_outputs=f, environ={}, settings_file=REPO / "Pulumi.dev.yaml",
                      flag_expectations=rc.Expectations(aof=False, source="flags"))
    assert spec.expectations.aof is False  # flag
    assert spec.expectations.maxmemory_policy == "volatile-ttl"  # outputs
    assert spec.expectations.maxmemory == 800 * 1024 * 1024  # settings


@pytest.mark.parametrize(("content", "fragment"), [
    ("not json", "not readable JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"redisUrl": "redis://x"}), "no `env` output"),
    (json.dumps({"env": {"REDIS_URL": "redis://x:1", "REDIS_PASSWORD": "[secret]"}}), "--show-secrets"),
    (json.dumps({"env": {"REDIS_URL": "redis://x:1"}, "rateLimits": {"auth": {"limit": "many"}}}),
     "stack output rateLimits.auth"),
])
def test_bad_stack_outputs(tmp_path: Path, content: str, fragment: str) -> None:
    f = tmp_path / "o.json"
    f.write_text(content)
    with pytest.raises(UsageError) as exc:
        rc.resolve(stack_outputs=f, environ={})
    assert fragment in str(exc.value)


def test_missing_outputs_file_and_both_sources() -> None:
    with pytest.raises(UsageError, match=r"--stack-outputs /nope\.json: no such file"):
        rc.resolve(stack_outputs=Path("/nope.json"), environ={})
    with pytest.raises(UsageError, match="alternatives"):
        rc.resolve(stack_outputs=Path("/nope.json"), stack="dev", environ={})


def test_stack_without_pulumi_cli_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rc.shutil, "which", lambda _name: None)
    with pytest.raises(UsageError) as exc:
        rc.resolve(stack="prod", environ={})
    msg = str(exc.value)
    assert "Pulumi CLI is not installed" in msg and "pulumi stack output --json --show-secrets --stack prod" in msg


def test_local_only_variables_come_from_the_process_environment(tmp_path: Path) -> None:
    f = write_outputs(tmp_path, {"env": env()})
    spec = rc.resolve(stack_outputs=f, environ={"REDIS_ADMIN_PASSWORD": "from-env-0123456789",
                                                "REDIS_PASSWORD": "must-not-be-used"})
    assert spec.admin_password == "from-env-0123456789" and spec.password == PW


@pytest.mark.parametrize(("stack_file", "policy", "aof", "maxmemory"), [
    ("Pulumi.dev.yaml", "allkeys-lru", True, 800 * 1024 * 1024),
    ("Pulumi.prod.yaml", "allkeys-lru", False, None),  # ElastiCache: no AOF, maxmemory by node type
])
def test_settings_expectations(stack_file: str, policy: str, aof: bool, maxmemory: int | None) -> None:
    exp, tiers, thresholds = rc.settings_expectations(REPO / stack_file)
    assert (exp.maxmemory_policy, exp.aof, exp.maxmemory) == (policy, aof, maxmemory)
    assert [t.name for t in tiers] == [t.name for t in DEFAULT_TIERS]
    assert {t.name for t in thresholds} >= {"memory_usage", "connected_clients"}


def test_bad_settings_file(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text("config:\n  redisstack:target: mars\n")
    with pytest.raises(UsageError, match=r"(?s)--settings .*redisstack:target = \"mars\""):
        rc.settings_expectations(bad)


def test_admin_credentials_required_for_admin_role() -> None:
    with pytest.raises(UsageError, match="REDIS_ADMIN_PASSWORD is not set"):
        rc.credentials(rc.spec_from_env(env()), "admin")
    spec = rc.spec_from_env(env(REDIS_ADMIN_USERNAME="ops", REDIS_ADMIN_PASSWORD="ops-password-0123456789"))
    assert rc.credentials(spec, "admin") == ("ops", "ops-password-0123456789")
    assert rc.credentials(spec, "anonymous") == (None, None)


def test_redact_removes_every_secret() -> None:
    spec = rc.spec_from_env(env(REDIS_ADMIN_PASSWORD="admin-password-0123456789"))
    text = f"WRONGPASS for {PW} and admin-password-0123456789"
    assert rc.redact(text, spec) == "WRONGPASS for **** and ****"


def test_expectation_sources_name_only_what_contributed() -> None:
    empty_flags = rc.Expectations(source="flags")
    settings = rc.Expectations("allkeys-lru", True, None, "settings Pulumi.dev.yaml")
    assert empty_flags.merged(settings).source == "settings Pulumi.dev.yaml"
    both = rc.Expectations(aof=False, source="flags").merged(settings)
    assert (both.source, both.aof, both.maxmemory_policy) == ("flags, settings Pulumi.dev.yaml", False, "allkeys-lru")
