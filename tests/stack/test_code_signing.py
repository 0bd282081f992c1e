"""Lambda code signing under Pulumi mocks: the archive is uploaded once to a private, versioned,
KMS-encrypted bucket, signed by the stack's Signer profile, and both functions deploy the signed
object under a config that enforces the signature (infra/components/code_signing.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from infra.components import code_signing as cs
from redisops import mockrun
from tests.support.pulumi_harness import STACK_FILES, StackRun, stack_file_config
from tests.support.pulumi_harness import run_stack_file as run  # the run the other component tests read

COMPONENT = "redisstack:aws:LambdaCodeSigning"
FUNCTION = "aws:lambda/function:Function"
BUCKET = "aws:s3/bucket:Bucket"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
PROFILE = "aws:signer/signingProfile:SigningProfile"
JOB = "aws:signer/signingJob:SigningJob"
CONFIG = "aws:lambda/codeSigningConfig:CodeSigningConfig"
KMS = "aws:kms/key:Key"
TAGS = {"project": "redisstack", "managed-by": "pulumi", "service": "api-rate-limiter", "owner": "platform"}


def owned(r: StackRun, type_: str) -> Any:
    found = [x for x in r.of_type(type_) if x.parent_type == COMPONENT]
    assert len(found) == 1, (type_, [x.name for x in found])
    return found[0]


def signed_key(r: StackRun) -> str:
    (signed,) = owned(r, JOB).outputs["signedObjects"]
    return str(signed["s3s"][0]["key"])


# ---- the functions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_both_functions_deploy_the_signed_object_under_an_enforcing_config(stack: str) -> None:
    r = run(stack)
    bucket = owned(r, BUCKET).outputs["bucket"]
    functions = {f.name: f for f in r.of_type(FUNCTION)}
    assert set(functions) == {"smoke-fn", "rotation-fn"}
    for fn in functions.values():
        assert "code" not in fn.inputs  # no unsigned archive reaches Lambda
        assert fn.inputs["s3Bucket"] == bucket
        assert fn.inputs["s3Key"] == signed_key(r) and fn.inputs["s3Key"].startswith(cs.SIGNED_PREFIX)
        assert fn.inputs["codeSigningConfigArn"] == owned(r, CONFIG).outputs["arn"]
    config = owned(r, CONFIG).inputs
    # Enforce: Lambda blocks an unsigned, expired, revoked or foreign-signed deployment (Warn only logs).
    assert config["policies"] == {"untrustedArtifactOnDeployment": "Enforce"}
    assert config["allowedPublishers"] == {"signingProfileVersionArns": [owned(r, PROFILE).outputs["versionArn"]]}


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_the_profile_signs_for_lambda_for_one_year(stack: str) -> None:
    profile = owned(run(stack), PROFILE).inputs
    assert profile["platformId"] == "AWSLambda-SHA384-ECDSA"
    assert profile["signatureValidityPeriod"] == {"type": "DAYS", "value": 365}
    assert profile["namePrefix"] == f"redisstack_{stack.replace('-', '_')}_"
    assert "name" not in profile  # a cancelled profile's name stays taken for two years


# ---- the bucket ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_bucket_is_private_versioned_and_encrypted_with_the_stack_key(stack: str) -> None:
    r = run(stack)
    key_arn = r.one(KMS, "redis-kms").outputs["arn"]
    bucket = owned(r, BUCKET)
    name = bucket.outputs["bucket"]
    assert bucket.inputs["bucketPrefix"] == f"redisstack-{stack}-code-"

    def setting(type_: str) -> dict[str, Any]:
        found = dict(owned(r, f"aws:s3/{type_}:{type_[0].upper()}{type_[1:]}").inputs)  # the run is shared
        assert found.pop("bucket") == name
        return dict(found)

    assert setting("bucketVersioning") == {"versioningConfiguration": {"status": "Enabled"}}
    assert setting("bucketServerSideEncryptionConfiguration") == {"rules": [{
        "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn},
        "bucketKeyEnabled": True}]}
    assert setting("bucketPublicAccessBlock") == {"blockPublicAcls": True, "blockPublicPolicy": True,
                                                  "ignorePublicAcls": True, "restrictPublicBuckets": True}
    assert setting("bucketOwnershipControls") == {"rule": {"objectOwnership": "BucketOwnerEnforced"}}
    assert setting("bucketNotification") == {"eventbridge": True}
    rules = {rule["id"]: rule for rule in setting("bucketLifecycleConfiguration")["rules"]}
    assert rules["expire-old-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    assert rules["expire-old-versions"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}
    # A signed object outlives its signature by one day, never less.
    assert rules["expire-signed-after-signature"]["filter"] == {"prefix": "signed/"}
    assert rules["expire-signed-after-signature"]["expiration"] == {"days": 366}
    (deny,) = json.loads(setting("bucketPolicy")["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_the_archive_goes_in_once_encrypted_after_versioning_and_encryption(stack: str) -> None:
    r = run(stack)
    archive = owned(r, OBJECT)
    assert archive.inputs["key"] == cs.UNSIGNED_KEY
    assert (archive.inputs["serverSideEncryption"], archive.inputs["kmsKeyId"]) == ("aws:kms", r.one(KMS, "redis-kms").outputs["arn"])
    # Signer needs the version id: the upload waits for versioning (and encryption) to be on.
    settings = {x.urn for x in r.resources if x.parent_type == COMPONENT and x.type in (
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")}
    assert len(settings) == 2 and settings <= set(archive.depends_on)
    assert len([x for x in r.resources if x.type == OBJECT]) == 1  # one upload for both functions
    # Deleting it deletes every version of its key (terraform-provider-aws internal/service/s3/object.go
    # resourceObjectDelete -> deleteAllObjectVersions): a replacement must delete first, or it would
    # delete the version it had just uploaded.
    assert archive.delete_before_replace is True


@pytest.mark.parametrize("version", ["", None, "null"])
def test_an_unversioned_archive_is_refused_with_the_wait_and_the_fix(version: str | None) -> None:
    # S3 versioning may take up to 15 minutes to apply (pulumi-aws BucketVersioning docs); a write
    # before that has no version id, which Signer cannot sign (StartSigningJob: versioned source).
    with pytest.raises(ValueError, match=r"before the bucket's versioning took effect.*--replace"):
        cs.source_version(version)
    with pytest.raises(ValueError, match=r"15 minutes"):
        cs.signed_prefix(version or "")
    assert cs.source_version("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY") == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"


def test_destroy_empties_the_versioned_bucket() -> None:
    # force_destroy deletes every version and delete marker (the deploy role's
    # s3:DeleteObjectVersion: tests/unit/test_workflows.py); the bucket holds only artifacts.
    bucket = owned(run("prod"), BUCKET)
    assert bucket.inputs["forceDestroy"] is True and bucket.protect is False


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_the_job_signs_exactly_the_uploaded_version(stack: str) -> None:
    r = run(stack)
    archive, job = owned(r, OBJECT), owned(r, JOB)
    bucket = owned(r, BUCKET).outputs["bucket"]
    assert job.inputs["source"] == {"s3": {"bucket": bucket, "key": cs.UNSIGNED_KEY,
                                           "version": archive.outputs["versionId"]}}
    # Under the version: a new version is a new key, whatever file name Signer writes.
    assert job.inputs["destination"] == {"s3": {"bucket": bucket,
                                                "prefix": f"signed/{archive.outputs['versionId']}/"}}
    assert job.inputs["profileName"] == owned(r, PROFILE).outputs["name"]
    assert job.inputs["ignoreSigningJobFailure"] is False  # a failed signature fails `pulumi up`
    # Nothing may stop a new version from replacing the job (every argument is ForceNew upstream).
    assert job.ignore_changes == () and archive.urn in job.depends_on


class _ContentVersionedMocks(mockrun.RecordingMocks):
    """S3 as it versions: each distinct content written gets its own version id."""

    def _aws(self, t: str, name: str, inputs: Any, outputs: dict[str, Any]) -> str | None:
        rid = super()._aws(t, name, inputs, outputs)
        if t == OBJECT:
            digest = hashlib.sha256()
            for entry, asset in sorted(inputs["source"].assets.items()):
                digest.update(entry.encode() + b"\0" + Path(asset.path).read_bytes())
            outputs["versionId"] = digest.hexdigest()[:32]
        return rid


def test_a_new_archive_is_signed_by_a_new_job_and_redeploys_both_functions(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    # terraform-provider-aws internal/service/signer/signing_job.go: source.s3.version is ForceNew
    # and the resource has no Update, so a new version means a new job, which writes a new key.
    monkeypatch.setattr(mockrun, "RecordingMocks", _ContentVersionedMocks)
    config, secret = stack_file_config("prod")
    before = mockrun.run_program(config, stack="prod", secret_keys=secret)
    same = mockrun.run_program(config, stack="prod", secret_keys=secret)
    extra = tmp_path / "CHANGED.txt"
    extra.write_text("a change to the functions' code\n")
    files = {**cs.package_files(), "redisops/CHANGED.txt": extra}
    monkeypatch.setattr(cs, "package_files", lambda: files)
    after = mockrun.run_program(config, stack="prod", secret_keys=secret)

    def chain(r: StackRun) -> tuple[str, str, set[str]]:
        return (owned(r, OBJECT).outputs["versionId"], owned(r, JOB).inputs["source"]["s3"]["version"],
                {f.inputs["s3Key"] for f in r.of_type(FUNCTION)})

    assert chain(before) == chain(same)  # same sources: same object, same job, nothing redeployed
    v0, job0, keys0 = chain(before)
    v1, job1, keys1 = chain(after)
    assert (job0, job1) == (v0, v1) and v0 != v1
    assert keys1 == {signed_key(after)} and keys0 == {signed_key(before)} and keys0 != keys1


# ---- when it exists, tags, names ---------------------------------------------------------------------
@pytest.mark.parametrize(("smoke", "rotation", "present"), [(True, False, True), (False, True, True),
                                                           (False, False, False)])
def test_one_signer_when_any_function_is_deployed(smoke: bool, rotation: bool, present: bool) -> None:
    # Only the switched-off ones: the same runs as test_rotation's and test_smoke_function's.
    r = run("prod", **{f"{c}__enabled": False for c, on in (("smoke", smoke), ("rotation", rotation)) if not on})
    assert len(r.of_type(COMPONENT)) == int(present)
    assert len(r.of_type(FUNCTION)) == int(smoke) + int(rotation)
    assert all("codeSigningConfigArn" in f.inputs for f in r.of_type(FUNCTION))


def test_taggable_children_carry_the_stack_tags() -> None:
    r = run("prod")
    for type_ in (BUCKET, OBJECT, PROFILE, CONFIG):
        assert TAGS.items() <= owned(r, type_).inputs["tags"].items(), type_
    for child in (x for x in r.resources if x.parent_type == COMPONENT):
        assert child.name.startswith("lambda-code-"), child.name


def test_names_too_long_for_s3_or_signer_are_refused_with_the_limit() -> None:
    assert cs.bucket_prefix("redisstack", "prod-sentinel") == "redisstack-prod-sentinel-code-"
    assert cs.profile_prefix("redis-stack", "prod-sentinel") == "redis_stack_prod_sentinel_"
    with pytest.raises(ValueError, match=r"longer than 37 characters"):
        cs.bucket_prefix("a-rather-long-project-name", "production-eu")
    with pytest.raises(ValueError, match=r"longer than 38 characters"):
        cs.profile_prefix("a-rather-long-project-name", "production-eu")
