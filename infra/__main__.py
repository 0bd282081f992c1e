"""Pulumi entry point (Pulumi.yaml `main: infra/`). Everything lives in infra.program."""

import pulumi

from infra.program import build

for _key, _value in build().items():
    pulumi.export(_key, _value)
