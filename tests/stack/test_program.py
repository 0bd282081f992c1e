"""The program as a whole: bad config stops it before any resource; every example stack runs."""

from __future__ import annotations

import pytest

from infra.errors import SettingsErrors
from tests.support.pulumi_harness import load_stack_file, run_program


def test_bad_config_declares_nothing() -> None:
    from tests.support import pulumi_harness

    recorded: list[object] = []
    original = pulumi_harness.RealisticMocks.new_resource

    def spy(self, args):  # type: ignore[no-untyped-def]
        recorded.append(args.typ)
        return original(self, args)

    pulumi_harness.RealisticMocks.new_resource = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(SettingsErrors, match=r"redisstack:rateLimits.auth = \"30/60\""):
            run_program({"target": "local", "rateLimits": {"auth": "30/60"}})
    finally:
        pulumi_harness.RealisticMocks.new_resource = original  # type: ignore[method-assign]
    assert recorded == [], f"resources declared despite invalid config: {recorded}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_run_and_export_the_env_contract(stack: str) -> None:
    config, secrets = load_stack_file(f"Pulumi.{stack}.yaml")
    run = run_program(config, stack=stack, secret_keys=secrets)
    assert run.resources, "the example stack declares resources"
    assert "env" in run.outputs and "env" in run.secret_outputs
    env = run.outputs["env"]
    assert env["REDIS_URL"].startswith("rediss://"), "TLS is on in both example stacks"
    assert env["RATE_LIMIT_AUTH"] == "30,60" and env["RATE_LIMIT_MODE"] == "redis"
    assert len(env["REDIS_PASSWORD"]) >= 16
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            assert env["REDIS_PASSWORD"] not in str(value), f"password leaked in plain output {name}"
