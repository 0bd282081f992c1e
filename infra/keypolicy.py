"""The KMS key policy a stack's key needs, and a check of a given policy against it.

Pure (no Pulumi, no boto3): `infra.components.aws_common` renders the policy of the keys the
stacks create, and `redisops key-policy` checks a user-supplied key (elasticache.kmsKeyArn)
against the same requirements, so the two can never disagree.

What each service needs, with its source (read 2026-12):

* CloudWatch alarms publishing into an SSE-KMS topic: `kms:Decrypt` + `kms:GenerateDataKey*` for
  `cloudwatch.amazonaws.com`. SNS passes the topic ARN as encryption context
  `aws:sns:topicArn`, so the grant names the one topic; `aws:SourceAccount` / `aws:SourceArn`
  stop a confused deputy (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html,
  "Enable compatibility between event sources from AWS services and encrypted topics").
* CloudWatch Logs encrypting a log group: `logs.<region>.amazonaws.com` with
  `kms:EncryptionContext:aws:logs:arn` equal to the group's ARN; the group is only created when
  the key policy already allows it
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html).
* Everything else (ElastiCache at rest, Secrets Manager, SSM SecureString, EBS, the Lambda
  functions' environment variables, and SSE-KMS on the Lambda code bucket, which Pulumi, Signer
  and Lambda use with the deploy role's permissions: infra/components/code_signing.py) reaches the
  key through IAM principals of the account: the policy delegates to IAM with the account root
  statement (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html). Lambda
  is one of them although it decrypts at run time: the caller that creates or updates a function
  (`kms:CreateGrant`, `kms:Encrypt`) lets Lambda create a grant, through which it decrypts
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html), so no
  service-principal statement; infra/components/smoke_function.py has the details.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SNS_PUBLISH_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")
LOGS_ACTIONS = ("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*")
# What a service actually calls (a policy granting wider wildcards still covers them).
_SNS_CALLS = ("kms:Decrypt", "kms:GenerateDataKey")
IAM_PRINCIPAL_CALLS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey")
# Every grant on a stack key is made by a service on the caller's behalf (EBS, ElastiCache, Lambda's
# environment grant), so the request carries kms:GrantIsForAWSResource = true; a key policy that allows
# CreateGrant only with it (the default key policy's "Allow attachment of persistent resources",
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html) works for the stacks.
GRANT_CONTEXT = {"kms:GrantIsForAWSResource": "true"}
_LOGS_CALLS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt", "kms:GenerateDataKey", "kms:DescribeKey")


# DNS suffix of each partition's service endpoints and regional service principals
# (botocore/data/endpoints.json, "partitions": dnsSuffix), for a key ARN read without the provider.
DNS_SUFFIX = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}


@dataclass(frozen=True)
class KeyUse:
    """What one key encrypts on behalf of AWS services (all ARNs fully spelled out)."""

    account_id: str
    partition: str
    region: str
    alarm_topic_arns: tuple[str, ...] = ()
    log_group_arns: tuple[str, ...] = ()
    dns_suffix: str = ""  # the provider's (aws.get_partition dns_suffix); else by partition (DNS_SUFFIX)

    @property
    def root(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:root"

    @property
    def logs_service(self) -> str:
        # Regional service principal: the endpoint host name, so the partition's DNS suffix
        # (logs.cn-north-1.amazonaws.com.cn in aws-cn).
        suffix = self.dns_suffix or DNS_SUFFIX.get(self.partition, "amazonaws.com")
        return f"logs.{self.region}.{suffix}"

    @property
    def alarm_source_arn(self) -> str:
        return f"arn:{self.partition}:cloudwatch:{self.region}:{self.account_id}:alarm:*"


def log_group_arn(partition: str, region: str, account_id: str, name: str) -> str:
    """The ARN CloudWatch Logs puts into the encryption context (no trailing `:*`)."""
    return f"arn:{partition}:logs:{region}:{account_id}:log-group:{name}"


def statements(use: KeyUse) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{
        "Sid": "AccountAdministersThroughIam",
        "Effect": "Allow",
        "Principal": {"AWS": use.root},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if use.alarm_topic_arns:
        out.append({
            "Sid": "CloudWatchAlarmsPublishToEncryptedTopic",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": list(SNS_PUBLISH_ACTIONS),
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:EncryptionContext:aws:sns:topicArn": sorted(use.alarm_topic_arns),
                                 "aws:SourceAccount": use.account_id},
                "ArnLike": {"aws:SourceArn": use.alarm_source_arn},
            },
        })
    if use.log_group_arns:
        out.append({
            "Sid": "CloudWatchLogsEncryptsTheseLogGroups",
            "Effect": "Allow",
            "Principal": {"Service": use.logs_service},
            "Action": list(LOGS_ACTIONS),
            "Resource": "*",
            "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": sorted(use.log_group_arns)}},
        })
    return out


def key_policy(use: KeyUse) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements(use)}, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# checking a policy (a given key's, or our own)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """One request a service will make: principal, KMS action, and the request context."""

    what: str
    principal_service: str | None  # None: an IAM principal of the account (through the root statement)
    actions: tuple[str, ...]
    context: Mapping[str, str] = field(default_factory=dict)


def needs(use: KeyUse) -> list[Need]:
    # kms:Encrypt: Lambda encrypts a function's environment with the caller's permissions.
    what = "IAM principals of the account may use the key (ElastiCache, Secrets Manager, SSM, EBS, Lambda, S3)"
    out = [Need(what, None, tuple(a for a in IAM_PRINCIPAL_CALLS if a != "kms:CreateGrant")),
           Need(what, None, ("kms:CreateGrant",), GRANT_CONTEXT)]
    for topic in use.alarm_topic_arns:
        out.append(Need(f"CloudWatch alarms publish into {topic}", "cloudwatch.amazonaws.com", _SNS_CALLS, {
            "kms:EncryptionContext:aws:sns:topicArn": topic, "aws:SourceAccount": use.account_id,
            "aws:SourceArn": use.alarm_source_arn.replace("*", "redisstack-alarm")}))
    for group in use.log_group_arns:
        out.append(Need(f"CloudWatch Logs encrypts {group}", use.logs_service, _LOGS_CALLS,
                        {"kms:EncryptionContext:aws:logs:arn": group}))
    return out


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: Any, need: Need, root: str, account_id: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    if need.principal_service is not None:
        return need.principal_service in _listify(principal.get("Service", []))
    return any(p in (root, account_id) for p in _listify(principal.get("AWS", [])))


def _action_matches(patterns: Any, action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _listify(patterns))


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Every operator and key must hold for the request context; unknown operators fail closed."""
    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None:
                return False
            values = [str(v) for v in _listify(expected)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in values
            elif operator == "Bool":  # "true"/"false", case-insensitive, as JSON true/false or strings
                ok = actual.lower() in [v.lower() for v in values]
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(actual, v) for v in values)
            else:
                return False
            if not ok:
                return False
    return True


def missing(policy: str | Mapping[str, Any], use: KeyUse) -> list[str]:
    """What `policy` does not allow of `needs(use)` (empty: everything is allowed).

    Allow statements only; an explicit Deny that matches is reported as well. Conditions are
    evaluated for StringEquals/StringLike/ArnEquals/ArnLike and Bool; any other operator counts as not
    granting (fail closed), so a policy this check passes also works for real."""
    doc = json.loads(policy) if isinstance(policy, str) else policy
    found: list[str] = []
    for need in needs(use):
        for action in need.actions:
            allowed = denied = False
            for st in _listify(doc.get("Statement", [])):
                if not (_principal_matches(st.get("Principal"), need, use.root, use.account_id)
                        and _action_matches(st.get("Action", []), action)
                        and _condition_holds(st.get("Condition", {}), need.context)):
                    continue
                if st.get("Effect") == "Deny":
                    denied = True
                elif st.get("Effect") == "Allow":
                    allowed = True
            if denied or not allowed:
                found.append(f"{need.what}: {action} is {'denied' if denied else 'not allowed'}")
    return found


def required_statements_text(use: KeyUse) -> str:
    """The statements a user-supplied key must carry, as JSON to paste into its policy."""
    return json.dumps(statements(use), indent=2, sort_keys=True)
