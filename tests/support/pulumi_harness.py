"""Run the real Pulumi program offline under mocks and record every resource (test-facing API).

The mocks themselves live in `redisops.mockrun` (shared with `redisops render`): one set of
mocks, so a render and a test never see different providers. `run_program(config)` sets the
stack config, runs `infra.program.build()` under `pulumi.runtime.set_mocks` and returns every
registered resource (type, name, parent, inputs, options) plus the resolved stack outputs with
their secret flags. RandomPassword gives a real random password of the requested length and
alphabet, tls resources give real keys and certificates, AWS resources get ARNs/ids/endpoints,
and provider-secret outputs come back secret, so the files a stack would upload can be started
for real and leaks of generated secrets can be searched for.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from functools import cache
from typing import Any

from redisops.mockrun import (
    ACCOUNT,
    PROJECT,
    REGION,
    Resource,
    StackRun,
    _RecordingMonitor,
    is_secret,
    load_stack_config,
)
from redisops.mockrun import RecordingMocks as RealisticMocks
from redisops.mockrun import run_program as _run_program
from redisops.mockrun import unwrap as unwrap_secret

__all__ = ["ACCOUNT", "LAMBDA_COMPONENTS", "PROJECT", "REGION", "STACK_FILES", "RealisticMocks", "Resource", "StackRun",
           "_RecordingMonitor", "is_secret", "load_stack_file", "run_program", "run_stack_file", "stack_file_config",
           "unwrap_secret", "without_component"]

# The committed stack files of the AWS targets, by stack name.
STACK_FILES = {"prod": "Pulumi.prod.yaml", "prod-sentinel": "Pulumi.prod-sentinel.yaml"}
# The Lambda components an AWS stack adds beside its target (each has tests of its own).
LAMBDA_COMPONENTS = ("redisstack:aws:SmokeFunction", "redisstack:aws:CredentialRotation",
                     "redisstack:aws:LambdaCodeSigning")


def run_program(config: Mapping[str, Any], *, stack: str = "dev", secret_keys: tuple[str, ...] = (),
                preview: bool = False) -> StackRun:
    """Run infra.program.build() under mocks with `config` (keys without namespace)."""
    return _run_program(config, stack=stack, secret_keys=secret_keys, preview=preview)


def without_component(run: StackRun, *types: str) -> StackRun:
    """The run without the components of `types` and everything under them: a target's own tests
    then see only the target (the component has tests of its own)."""
    dropped = {(r.type, r.name) for r in run.resources if r.type in types}
    kept: list[Resource] = []
    for r in run.resources:  # parents register before their children
        if (r.type, r.name) in dropped or (r.parent_type, r.parent_name) in dropped:
            dropped.add((r.type, r.name))
        else:
            kept.append(r)
    return dataclasses.replace(run, resources=kept)


def load_stack_file(path: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Config of a committed Pulumi.<stack>.yaml, with `secure:` values replaced by fresh test secrets."""
    return load_stack_config(path, secret_value=lambda _key: "Test-Secret-" + secrets.token_hex(12))


def stack_file_config(stack: str, **overrides: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Config of the committed file of `stack` (STACK_FILES), `top__key=value` setting one key of a section."""
    config, secret = load_stack_file(STACK_FILES[stack])
    for key, value in overrides.items():
        top, sub = key.split("__")
        config[top] = {**config.get(top, {}), sub: value}
    return config, secret


@cache
def run_stack_file(stack: str, **overrides: Any) -> StackRun:
    """The whole program for `stack_file_config(stack, **overrides)`, run once per session: the
    test modules of the components of one stack (smoke, rotation, code signing, the targets) read
    the same run. Shared: a test copies what it wants to change, never edits the run."""
    config, secret = stack_file_config(stack, **overrides)
    return run_program(config, stack=stack, secret_keys=secret)
