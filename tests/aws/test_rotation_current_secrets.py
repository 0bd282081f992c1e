"""After an automatic rotation the stack outputs still hold the passwords `pulumi up` generated;
with REDISOPS_SECRETS=aws redisops connects with the secrets' current values (moto Secrets
Manager, the secrets as the stacks write them: JSON on ElastiCache, bare on the Sentinel hosts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from redisops import connection as rc
from redisops.errors import UsageError

STALE, CURRENT, ADMIN = "Stale-0123456789abcdef-xyz", "Current-0123456789abcdef-xyz", "Admin-current-0123456789ab"


def write(tmp_path: Path, outputs: dict[str, Any]) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path


def test_elasticache_outputs_take_the_current_passwords_from_the_secrets(sm: Any, tmp_path: Path) -> None:
    app = sm.create_secret(Name="app", SecretString=json.dumps({"username": "app", "password": STALE}))["ARN"]
    admin = sm.create_secret(Name="admin", SecretString=json.dumps({"username": "admin", "password": STALE}))["ARN"]
    sm.put_secret_value(SecretId=app, SecretString=json.dumps({"username": "app", "password": CURRENT}))
    sm.put_secret_value(SecretId=admin, SecretString=json.dumps({"username": "admin", "password": ADMIN}))
    outputs = {"env": {"REDIS_URL": "rediss://app@master.example:6379/0", "REDIS_PASSWORD": STALE, "REDIS_TLS": "true",
                       "REDIS_TIMEOUT": "2000", "REDIS_USERNAME": "app"},
               "authSecretArn": app, "adminSecretArn": admin, "adminPassword": STALE}
    path = write(tmp_path, outputs)
    stale = rc.resolve(stack_outputs=path, environ={})
    assert (stale.password, stale.admin_password) == (STALE, STALE)
    fresh = rc.resolve(stack_outputs=path, environ={rc.SECRETS_SOURCE_VARIABLE: "aws"})
    assert (fresh.username, fresh.password, fresh.admin_password) == ("app", CURRENT, ADMIN)
    assert CURRENT not in repr(fresh) and ADMIN not in repr(fresh)


def test_sentinel_bare_secrets_fill_the_app_sentinel_and_admin_passwords(sm: Any, tmp_path: Path) -> None:
    app = sm.create_secret(Name="app", SecretString=CURRENT)["ARN"]
    admin = sm.create_secret(Name="admin", SecretString=ADMIN)["ARN"]
    outputs = {"env": {"REDIS_URL": "redis+sentinel://10.0.0.1:26379/mymaster/0", "REDIS_PASSWORD": STALE,
                       "REDIS_SENTINEL_PASSWORD": STALE, "REDIS_TLS": "true", "REDIS_TIMEOUT": "2000"},
               "appSecretArn": app, "adminSecretArn": admin, "adminPassword": STALE, "sentinelPassword": STALE}
    fresh = rc.resolve(stack_outputs=write(tmp_path, outputs), environ={rc.SECRETS_SOURCE_VARIABLE: "aws"})
    assert (fresh.password, fresh.sentinel_password, fresh.admin_password) == (CURRENT, CURRENT, ADMIN)


def test_an_unknown_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="REDISOPS_SECRETS='vault': expected outputs"):
        rc.resolve(stack_outputs=write(tmp_path, {"env": {}}), environ={rc.SECRETS_SOURCE_VARIABLE: "vault"})
