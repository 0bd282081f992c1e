"""The committed prod render's replication configurations (infra/components/log_replica.py), put
through moto's S3 API as the provider would send them (PutBucketReplication, terraform-provider-aws
internal/service/s3/bucket_replication_configuration.go, Create -> PutBucketReplication, Read ->
GetBucketReplication): S3 refuses a configuration on a bucket whose versioning is not on, which is
why each configuration depends on the versioning of its buckets; the provider retries exactly that
refusal while versioning propagates (resourceBucketReplicationConfigurationCreate:
`ErrMessageContains(err, "InvalidRequest", "Versioning must be 'Enabled' on the bucket")`), and
moto answers with that code and message. moto stores and returns the configuration; it replicates no object
and checks neither the role nor the keys (docs/fidelity.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
HOME = "eu-west-1"
# Pulumi input names -> S3 API member names (pulumi-aws schema / S3 API reference, ReplicationRule).
API_NAMES = {"id": "ID", "replicaKmsKeyId": "ReplicaKmsKeyID", "sseKmsEncryptedObjects": "SseKmsEncryptedObjects"}


def api(value: Any) -> Any:
    if isinstance(value, dict):
        return {API_NAMES.get(k, k[0].upper() + k[1:]): api(v) for k, v in value.items()}
    if isinstance(value, list):
        return [api(v) for v in value]
    return value


def render_configs() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The replication configurations of docs/stacks/prod.yaml and every bucket's region."""
    render = yaml.safe_load((ROOT / "docs/stacks/prod.yaml").read_text())
    # Every bucket of the stack has a BucketVersioning naming it (aws_common.private_bucket_basics).
    buckets = {r["inputs"]["bucket"]: r["inputs"].get("region", HOME) for r in render["resources"]
               if r["type"] == "aws:s3/bucketVersioning:BucketVersioning"}
    return [r["inputs"] for r in render["resources"] if r["type"] == REPLICATION], buckets


@pytest.fixture
def s3() -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield {region: boto3.client("s3", region_name=region) for region in (HOME, "eu-central-1")}


def create(s3: dict[str, Any], buckets: dict[str, str], *, versioned: bool) -> None:
    for name, region in buckets.items():
        s3[region].create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        if versioned:
            s3[region].put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def put(s3: dict[str, Any], buckets: dict[str, str], config: dict[str, Any]) -> None:
    s3[config.get("region", HOME)].put_bucket_replication(
        Bucket=config["bucket"], ReplicationConfiguration={"Role": config["role"], "Rules": api(config["rules"])})


def test_the_three_configurations_are_accepted_and_read_back_once_versioning_is_on(s3: dict[str, Any]) -> None:
    configs, buckets = render_configs()
    assert len(configs) == 3 and sorted(set(buckets.values())) == ["eu-central-1", "eu-west-1"]
    create(s3, buckets, versioned=True)
    for config in configs:
        assert buckets[config["bucket"]] == config.get("region", HOME)  # put in the source's region
        put(s3, buckets, config)
        got = s3[buckets[config["bucket"]]].get_bucket_replication(Bucket=config["bucket"])
        [rule] = got["ReplicationConfiguration"]["Rules"]
        want = api(config["rules"][0])
        assert got["ReplicationConfiguration"]["Role"] == config["role"]
        # The whole rule reads back as put (V2: Filter, Priority, DeleteMarkerReplication; the
        # replica key of R -> L1), except SourceSelectionCriteria, which moto 5.2.5 stores
        # without returning it (the stack test pins it on R -> L1 alone).
        assert rule == {k: v for k, v in want.items() if k != "SourceSelectionCriteria"}
        assert (rule["Status"], rule["Priority"], rule["DeleteMarkerReplication"]) == (
            "Enabled", 1, {"Status": "Disabled"})
        assert ("EncryptionConfiguration" in rule["Destination"]) == ("SourceSelectionCriteria" in want)


def test_a_configuration_put_before_versioning_is_refused(s3: dict[str, Any]) -> None:
    configs, buckets = render_configs()
    create(s3, buckets, versioned=False)
    with pytest.raises(ClientError) as info:
        put(s3, buckets, configs[0])
    # S3: "Versioning must be 'Enabled' on the bucket to apply a replication configuration".
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    assert "Versioning must be 'Enabled'" in info.value.response["Error"]["Message"]
