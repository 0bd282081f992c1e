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

__all__ = ["ACCOUNT", "PROJECT", "REGION", "RealisticMocks", "Resource", "StackRun", "_RecordingMonitor",
           "is_secret", "load_stack_file", "run_program", "unwrap_secret", "without_component"]


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
