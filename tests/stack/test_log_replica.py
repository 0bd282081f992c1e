"""The code bucket's access logs replicated to a second region, under Pulumi mocks
(infra/components/log_replica.py): L1 -> R, R -> L1 (SSE-KMS objects, replicas under the stack
key), Lr2 -> L1; R encrypted with a key of its own in the second region and logging into Lr2; one
replication role with the permissions of AWS's live-replication examples; every configuration put
after versioning is on at both ends. What S3 then does (the replication itself) needs AWS
(docs/fidelity.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components import log_replica as lr
from infra.errors import SettingsErrors
from tests.support.pulumi_harness import STACK_FILES, Resource, StackRun, run_program, stack_file_config
from tests.support.pulumi_harness import run_stack_file as run

REGION2 = "eu-central-1"  # alerting.logReplicaRegion of the committed prod stacks
COMPONENT = "redisstack:aws:LogReplica::lambda-code-log-replica"
REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
BUCKET = "aws:s3/bucket:Bucket"
STACKS = list(STACK_FILES)


def named(r: StackRun, name: str) -> Resource:
    return r.named(name)


def arns(r: StackRun) -> dict[str, str]:
    """L1, R, Lr2 bucket ARNs and the two keys' ARNs."""
    return {"L1": named(r, "lambda-code-logs-bucket").outputs["arn"],
            "R": named(r, "lambda-code-log-replica-bucket").outputs["arn"],
            "Lr2": named(r, "lambda-code-log-replica-logs-bucket").outputs["arn"],
            "key2": named(r, "lambda-code-log-replica-kms").outputs["arn"],
            "stack_key": named(r, "redis-kms").outputs["arn"]}


@pytest.mark.parametrize("stack", STACKS)
def test_three_rules_replicate_the_logs_across_and_back_with_the_right_keys(stack: str) -> None:
    r = run(stack)
    a = arns(r)
    role = named(r, "lambda-code-log-replica-role").outputs["arn"]
    configs = {c.name: c.inputs for c in r.of_type(REPLICATION)}
    by_source = {c["bucket"]: c for c in configs.values()}
    name = {named(r, n).outputs["bucket"]: k for k, n in (
        ("L1", "lambda-code-logs-bucket"), ("R", "lambda-code-log-replica-bucket"),
        ("Lr2", "lambda-code-log-replica-logs-bucket"))}
    routes = {(name[src], c["rules"][0]["destination"]["bucket"], c.get("region")) for src, c in by_source.items()}
    assert routes == {("L1", a["R"], None), ("R", a["L1"], REGION2), ("Lr2", a["L1"], REGION2)}
    for c in configs.values():
        [rule] = c["rules"]
        assert c["role"] == role
        # V2 rules: a filter (every object), a priority, delete markers not replicated.
        assert (rule["status"], rule["priority"], rule["filter"], rule["deleteMarkerReplication"]) == (
            "Enabled", 1, {"prefix": ""}, {"status": "Disabled"})
    back = next(c for src, c in by_source.items() if name[src] == "R")["rules"][0]
    assert back["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
    assert back["destination"]["encryptionConfiguration"] == {"replicaKmsKeyId": a["stack_key"]}
    for src, c in by_source.items():  # SSE-S3 log objects: no KMS selection, no replica key
        if name[src] != "R":
            assert "sourceSelectionCriteria" not in c["rules"][0]
            assert "encryptionConfiguration" not in c["rules"][0]["destination"]


@pytest.mark.parametrize("stack", STACKS)
def test_replication_is_put_only_after_versioning_at_both_ends_and_the_roles_policy(stack: str) -> None:
    r = run(stack)
    versionings = {v.urn for v in r.of_type("aws:s3/bucketVersioning:BucketVersioning")
                   if v.name in ("lambda-code-logs-versioning", "lambda-code-log-replica-versioning",
                                 "lambda-code-log-replica-logs-versioning")}
    assert len(versionings) == 3
    policy = named(r, "lambda-code-log-replica-role-policy").urn
    for c in r.of_type(REPLICATION):
        assert versionings | {policy} <= set(c.depends_on), c.name
    for v in r.of_type("aws:s3/bucketVersioning:BucketVersioning"):
        if v.name in ("lambda-code-log-replica-versioning", "lambda-code-log-replica-logs-versioning"):
            assert v.inputs["versioningConfiguration"] == {"status": "Enabled"} and v.inputs["region"] == REGION2


@pytest.mark.parametrize("stack", STACKS)
def test_the_replica_is_private_sse_kms_in_the_second_region_and_logs_into_its_own_destination(stack: str) -> None:
    r = run(stack)
    a = arns(r)
    replica = named(r, "lambda-code-log-replica-bucket")
    assert replica.inputs["region"] == REGION2 and replica.inputs["bucketPrefix"] == f"redisstack-{stack}-replica-"
    key = named(r, "lambda-code-log-replica-kms").inputs
    assert (key["region"], key["enableKeyRotation"], key["deletionWindowInDays"]) == (REGION2, True, 30)
    # Only the account-root statement: the roles reach it through IAM (infra/keypolicy.py).
    assert [s["Sid"] for s in json.loads(key["policy"])["Statement"]] == ["AccountAdministersThroughIam"]
    assert a["key2"].startswith(f"arn:aws:kms:{REGION2}:")
    sse = named(r, "lambda-code-log-replica-encryption").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": a["key2"]}
    bucket = replica.outputs["bucket"]
    settings = {x.name: x.inputs for x in r.resources if x.parent_type == "redisstack:aws:LogReplica"
                and x.inputs.get("bucket") == bucket}
    assert settings["lambda-code-log-replica-ownership"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert all(settings["lambda-code-log-replica-public-access"][k] for k in (
        "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert settings["lambda-code-log-replica-events"]["eventbridge"] is True
    lifecycle = settings["lambda-code-log-replica-lifecycle"]["rules"][0]
    l1_lifecycle = named(r, "lambda-code-logs-lifecycle").inputs["rules"][0]
    assert lifecycle == l1_lifecycle and lifecycle["expiration"] == {"days": 365}
    [deny] = json.loads(settings["lambda-code-log-replica-tls-only"]["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # R logs into Lr2 (same region), which is SSE-S3 and does not log itself.
    logging = named(r, "lambda-code-log-replica-logs-logging").inputs
    lr2 = named(r, "lambda-code-log-replica-logs-bucket")
    assert logging == {"bucket": bucket, "targetBucket": lr2.outputs["bucket"], "targetPrefix": lr.REPLICA_LOG_PREFIX,
                       "region": REGION2}
    assert lr2.inputs["region"] == REGION2
    assert named(r, "lambda-code-log-replica-logs-encryption").inputs["rules"][0][
        "applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}


def statement(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


@pytest.mark.parametrize("stack", STACKS)
def test_the_replication_role_has_exactly_the_live_replication_permissions(stack: str) -> None:
    r = run(stack)
    a = arns(r)
    trust = json.loads(named(r, "lambda-code-log-replica-role").inputs["assumeRolePolicy"])["Statement"]
    # The S3 user guide's trust policy, no condition (trust_policy's docstring says why).
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    policy = json.loads(named(r, "lambda-code-log-replica-role-policy").inputs["policy"])
    assert len(policy["Statement"]) == 5
    sources = sorted([a["L1"], a["R"], a["Lr2"]])
    assert statement(policy, "ReadReplicationConfigurationOfTheSources")["Resource"] == sources
    assert statement(policy, "ReadReplicationConfigurationOfTheSources")["Action"] == [
        "s3:GetReplicationConfiguration", "s3:ListBucket"]
    assert statement(policy, "ReadObjectVersionsOfTheSources")["Resource"] == [f"{s}/*" for s in sources]
    writes = statement(policy, "WriteReplicasIntoTheDestinations")
    assert writes["Action"] == ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    assert writes["Resource"] == sorted(f"{d}/*" for d in (a["L1"], a["R"]))  # Lr2 is never a destination
    decrypt, encrypt = statement(policy, "DecryptSseKmsSources0"), statement(policy, "EncryptReplicas0")
    assert (decrypt["Action"], decrypt["Resource"]) == (["kms:Decrypt"], a["key2"])
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION2}.amazonaws.com"},
                                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [a["R"], f"{a['R']}/*"]}}
    # Decrypt too: R's objects have an S3 Bucket Key, which their replicas in L1 keep, and S3
    # verifies it with kms:Decrypt on the replica key ("Replicating encrypted objects", "S3
    # Bucket Keys and replication"); without it R -> L1 fails for every SSE-KMS object.
    assert (encrypt["Action"], encrypt["Resource"]) == (["kms:Decrypt", "kms:Encrypt"], a["stack_key"])
    assert encrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"},
                                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [a["L1"], f"{a['L1']}/*"]}}


def test_off_keeps_the_logs_in_one_region_and_the_stacks_own_region_is_refused() -> None:
    cfg, secret = stack_file_config("prod", alerting__logReplicaRegion="off")
    off = run_program(cfg, stack="prod", secret_keys=secret)
    assert not off.of_type(REPLICATION) and not [x for x in off.resources if x.name.startswith("lambda-code-log-")]
    assert off.named("lambda-code-logs-bucket")  # the log bucket itself stays
    cfg, secret = stack_file_config("prod", alerting__logReplicaRegion="eu-west-1")  # = aws:region
    with pytest.raises(SettingsErrors, match=r"alerting.logReplicaRegion = \"eu-west-1\": is the stack's aws:region"):
        run_program(cfg, stack="prod", secret_keys=secret)


@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_of_a_second_region_bucket_is_managed_in_that_region(stack: str) -> None:
    # pulumi-aws 7's `region` defaults to the provider's: one forgotten argument on a bucket-level
    # resource of R or Lr2 would send its S3 call to aws:region, where the bucket is not, and fail
    # the first `up` (mocks accept it). Conversely L1's resources and L1 -> R stay in aws:region.
    r = run(stack)
    second = {named(r, n).outputs["bucket"] for n in ("lambda-code-log-replica-bucket",
                                                      "lambda-code-log-replica-logs-bucket")}
    home = {named(r, n).outputs["bucket"] for n in ("lambda-code-logs-bucket", "lambda-code-bucket")}
    on_second = [x for x in r.resources if x.inputs.get("bucket") in second]
    on_home = [x for x in r.resources if x.inputs.get("bucket") in home]
    # R: ownership, public access, versioning, events, encryption, lifecycle, TLS-only policy,
    # logging (R is its source), replication; Lr2: the same but its delivery policy and no logging.
    assert len(on_second) == 17 and {x.inputs.get("region") for x in on_second} == {REGION2}, sorted(
        (x.name, x.inputs.get("region")) for x in on_second)
    assert on_home and all("region" not in x.inputs for x in on_home)
    for n in ("lambda-code-log-replica-bucket", "lambda-code-log-replica-logs-bucket", "lambda-code-log-replica-kms"):
        assert named(r, n).inputs["region"] == REGION2, n
    # The role and its policy are global (IAM takes no region).
    assert all("region" not in named(r, n).inputs for n in ("lambda-code-log-replica-role",
                                                            "lambda-code-log-replica-role-policy"))
