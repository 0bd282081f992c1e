"""Find generated secrets where they must not be: outside a Pulumi secret wrapper."""

from __future__ import annotations

from typing import Any

from tests.support.pulumi_harness import StackRun, is_secret

PASSWORD = "random:index/randomPassword:RandomPassword"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"


def generated_secrets(run: StackRun) -> dict[str, str]:
    """Every generated password and private key of a mocked run, by resource name."""
    found = {r.name: str(r.outputs["result"]) for r in run.of_type(PASSWORD)}
    for r in run.of_type(PRIVATE_KEY):
        found[r.name] = str(r.outputs["privateKeyPem"])
    return found


def plain_occurrences(value: Any, needles: dict[str, str], path: str = "") -> list[str]:
    """Paths where a needle appears outside a Pulumi secret wrapper."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in plain_occurrences(v, needles, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in plain_occurrences(v, needles, f"{path}[{i}]")]
    return [f"{path} contains {name}" for name, secret in needles.items() if secret in str(value)]
