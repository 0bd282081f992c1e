"""The env contract the application receives, and its .env rendering."""

from __future__ import annotations

from infra.envcontract import env_contract, redis_url, render_dotenv, sentinel_url
from ratelimit.tiers import DEFAULT_TIERS


def test_contract_has_the_guides_variables_in_the_guides_formats() -> None:
    env = env_contract(url=redis_url("cache.internal", 6379, tls=True), password="pw-0123456789abcdef",
                       tls=True, timeout_ms=5000, tiers=DEFAULT_TIERS)
    assert env["REDIS_URL"] == "rediss://cache.internal:6379/0"
    assert env["REDIS_TLS"] == "true" and env["REDIS_ENABLED"] == "true"
    assert env["REDIS_TIMEOUT"] == "5000" and env["RATE_LIMIT_MODE"] == "redis"
    assert {k: v for k, v in env.items() if k.startswith("RATE_LIMIT_") and k != "RATE_LIMIT_MODE"} == {
        "RATE_LIMIT_GENERAL": "120,60", "RATE_LIMIT_AUTH": "30,60", "RATE_LIMIT_SENSITIVE": "10,60",
        "RATE_LIMIT_ADMIN": "300,60", "RATE_LIMIT_MFA": "5,60", "RATE_LIMIT_FINANCIAL": "20,60"}
    assert "pw-0123456789abcdef" not in env["REDIS_URL"]


def test_plain_url_and_sentinel_url() -> None:
    assert redis_url("localhost", 6379, tls=False) == "redis://localhost:6379/0"
    assert redis_url("h", 1, tls=True, username="app") == "rediss://app@h:1/0"
    assert sentinel_url([("a", 26379), ("b", 26379)], "rl", tls=True) == "rediss+sentinel://a:26379,b:26379/rl"


def test_dotenv_quotes_what_needs_quoting() -> None:
    body = render_dotenv({"A": "plain-1,2", "B": 'we"ird $x y', "C": ""})
    assert body.splitlines() == ["A=plain-1,2", 'B="we\\"ird \\$x y"', "C="]


def test_cluster_flag_only_when_the_target_is_a_cluster() -> None:
    base = {"url": redis_url("clustercfg.example", 6379, tls=True), "password": "pw-0123456789abcdef", "tls": True,
            "timeout_ms": 2000, "tiers": DEFAULT_TIERS}
    assert env_contract(**base, cluster=True)["REDIS_CLUSTER"] == "true"  # type: ignore[arg-type]
    assert "REDIS_CLUSTER" not in env_contract(**base)  # type: ignore[arg-type]


def test_the_secret_arn_rides_beside_the_deploy_time_password() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redisstack/prod/app-AbCdEf"
    env = env_contract(url="rediss://h:6379/0", password="pw", tls=True, timeout_ms=5000, tiers=DEFAULT_TIERS,
                       password_secret_arn=arn)
    assert env["REDIS_PASSWORD_SECRET_ARN"] == arn and env["REDIS_PASSWORD"] == "pw"
    assert "REDIS_PASSWORD_SECRET_ARN" not in env_contract(url="redis://h:6379/0", password="pw", tls=False,
                                                           timeout_ms=5000, tiers=DEFAULT_TIERS)
