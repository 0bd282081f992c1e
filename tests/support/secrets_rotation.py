"""Secrets Manager's own part of a rotation, played on moto's backend.

Before it calls the rotation function's createSecret, RotateSecret turns rotation on and adds the
version `ClientRequestToken` labelled AWSPENDING with no value yet: the generic template refuses a
token without that label ("Secret version %s has no stage for rotation",
aws-samples/aws-secrets-manager-rotation-lambdas SecretsManagerRotationTemplate/lambda_function.py).
moto's RotateSecret would invoke a Lambda for the steps (it needs Docker for that), so this does
only Secrets Manager's part, and the tests call the steps themselves.
"""

from __future__ import annotations

import time
import uuid

from moto.core import DEFAULT_ACCOUNT_ID
from moto.secretsmanager.models import secretsmanager_backends


def start_rotation(arn: str, region: str) -> str:
    """Rotation on, an empty AWSPENDING version under a new token (returned)."""
    secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID][region].secrets[arn]
    token = str(uuid.uuid4())
    secret.remove_version_stages_from_old_versions(["AWSPENDING"])
    secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
    secret.rotation_requested = secret.rotation_enabled = True
    secret.auto_rotate_after_days = 30
    return token
