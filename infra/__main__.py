"""Pulumi entry point (Pulumi.yaml `main: infra/`). Everything lives in infra.program."""

from infra.program import main

main()
