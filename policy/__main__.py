"""Policy pack entry point for the Pulumi CLI (`--policy-pack policy`).

`PolicyPack()` starts a gRPC server and blocks until the CLI is done, so it lives here only;
the policies themselves are in `policy.policies` where tests and tools can import them.
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, Policy, PolicyPack

# The CLI runs this file from the pack's own virtualenv, where the repo is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policy.policies import POLICIES

PolicyPack(
    name="redisstack-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list[Policy](POLICIES),
    description="Security and durability guardrails for the Redis behind the API rate limiter.",
)
