"""checkov on the committed renders (redisops.scan) and the render -> Terraform plan converter
(redisops.tfplan).

The scan tests run the real checkov from .venv-checkov (`bash scripts/setup.sh --checkov`;
scripts/test.sh installs it, so CI runs them) once per session, offline, and fail on a failure no
entry of policy/checkov-suppressions.yaml covers, or on an entry that matches nothing any more.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import user_data
from redisops import scan as sc
from redisops import tfplan
from redisops.render import RENDER_DIR, available_stacks, render_stack

ROOT = Path(__file__).resolve().parents[2]
STACKS = available_stacks(ROOT)
CHECKOV_PY = ROOT / sc.CHECKOV_VENV / "bin" / "python"
# scripts/test.sh installs checkov and sets REDISSTACK_REQUIRE_CHECKOV: there (CI) a missing checkov
# fails these tests instead of skipping them, so the scan cannot silently stop running.
CHECKOV_REQUIRED = os.environ.get("REDISSTACK_REQUIRE_CHECKOV") == "1"
CHECKOV_MISSING = "checkov is not installed in .venv-checkov: run `bash scripts/setup.sh --checkov` (scripts/test.sh does)"
needs_checkov = pytest.mark.skipif(
    not CHECKOV_REQUIRED and not (ROOT / sc.CHECKOV_VENV / "bin" / "checkov").exists(), reason=CHECKOV_MISSING)


def plan_of(stack: str) -> dict[str, Any]:
    return tfplan.render_to_plan(tfplan.load_render(ROOT / RENDER_DIR / f"{stack}.yaml"))


def planned(plan: dict[str, Any], address: str) -> dict[str, Any]:
    found = [r for r in plan["planned_values"]["root_module"]["resources"] if r["address"] == address]
    assert len(found) == 1, address
    return found[0]


def configured(plan: dict[str, Any], address: str) -> dict[str, Any]:
    found = [r for r in plan["configuration"]["root_module"]["resources"] if r["address"] == address]
    assert len(found) == 1, address
    return found[0]


# ---- type tokens ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("token", "expected"), [
    ("aws:elasticache/replicationGroup:ReplicationGroup", "aws_elasticache_replication_group"),
    ("aws:cloudwatch/logGroup:LogGroup", "aws_cloudwatch_log_group"),
    ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws_vpc_security_group_ingress_rule"),
    ("aws:ebs/volume:Volume", "aws_ebs_volume"),
    ("aws:secretsmanager/secretVersion:SecretVersion", "aws_secretsmanager_secret_version"),
    ("aws:ec2/instance:Instance", "aws_instance"),
    ("aws:ec2/securityGroup:SecurityGroup", "aws_security_group"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "aws_launch_template"),
    ("random:index/randomPassword:RandomPassword", "random_password"),
    ("tls:index/privateKey:PrivateKey", "tls_private_key"),
    ("docker:index/container:Container", "docker_container"),
    ("docker:index/remoteImage:RemoteImage", "docker_image"),
])
def test_type_tokens_map_to_terraform_types(token: str, expected: str) -> None:
    assert tfplan.resource_type(token) == expected


@pytest.mark.parametrize(("token", "says"), [
    ("aws:ec2/fleet:Fleet", "TYPE_OVERRIDES"),  # aws_ec2_fleet, not aws_fleet: ec2 is never guessed
    ("gcp:compute/instance:Instance", "allowed: aws, random, tls, docker"),
    ("not-a-token", "<package>:<module>/<member>:<Type>"),
])
def test_a_type_without_a_known_terraform_name_is_refused_by_name(token: str, says: str) -> None:
    with pytest.raises(tfplan.PlanError, match=repr(token).replace("[", r"\[")) as caught:
        tfplan.resource_type(token)
    assert says in str(caught.value)


# ---- the converted renders --------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_every_provider_resource_of_the_render_is_in_the_plan_once(stack: str) -> None:
    render = tfplan.load_render(ROOT / RENDER_DIR / f"{stack}.yaml")
    plan = plan_of(stack)
    expected = sorted(f"{tfplan.resource_type(r['type'])}.{tfplan.resource_name(r['name'])}"
                      for r in render["resources"] if not r["type"].startswith("redisstack:"))
    addresses = [r["address"] for r in plan["planned_values"]["root_module"]["resources"]]
    assert sorted(addresses) == expected and len(set(addresses)) == len(addresses)
    assert [c["address"] for c in plan["resource_changes"]] == addresses
    assert [c["address"] for c in plan["configuration"]["root_module"]["resources"]] == addresses


def test_references_replace_the_ids_of_resources_the_render_declares() -> None:
    plan = plan_of("prod-sentinel")
    eni = "aws_network_interface.redis_node_0_eni"
    # Unknown until apply, as in a real plan: null in values, the reference in the configuration.
    assert planned(plan, eni)["values"]["security_groups"] == [None]
    assert configured(plan, eni)["expressions"]["security_groups"] == {
        "references": ["aws_security_group.redis_sg.id", "aws_security_group.redis_sg"]}
    change = next(c for c in plan["resource_changes"] if c["address"] == eni)
    assert change["change"]["after_unknown"]["security_groups"] is True
    # Nested blocks keep their references inside the block.
    instance = configured(plan, "aws_instance.redis_node_0")["expressions"]
    assert instance["launch_template"] == [{"id": {"references": ["aws_launch_template.redis_lt.id",
                                                                  "aws_launch_template.redis_lt"]}}]
    assert "id" not in planned(plan, "aws_instance.redis_node_0")["values"]["launch_template"][0]
    # ARNs and names resolve as well (TopicSubscription.topic is Terraform's topic_arn).
    sub = configured(plan, "aws_sns_topic_subscription.redis_alarms_email")["expressions"]
    assert sub == {"topic_arn": {"references": ["aws_sns_topic.redis_alarms.arn", "aws_sns_topic.redis_alarms"]}}
    profile = configured(plan, "aws_iam_instance_profile.redis_host_profile")["expressions"]
    assert profile["role"]["references"][0] == "aws_iam_role.redis_host_role.name"


def test_a_rotation_schedule_will_reference_its_secret() -> None:
    # What CKV2_AWS_57 looks for once issue 13 §1 lands: a rotation resource whose secret_id is a
    # reference to the secret (then the suppression above goes stale and must be removed).
    render = {"project": "p", "stack": "prod", "resources": [
        {"type": "aws:secretsmanager/secret:Secret", "name": "redis-auth", "inputs": {"namePrefix": "x-"}},
        {"type": "aws:secretsmanager/secretRotation:SecretRotation", "name": "redis-auth-rotation",
         "options": {"dependsOn": ["aws:secretsmanager/secret:Secret::redis-auth"]},
         "inputs": {"secretId": "redis-auth-id", "rotationRules": {"automaticallyAfterDays": 30}}},
        # The same value without a recorded dependency is a literal, not an edge.
        {"type": "aws:secretsmanager/secretRotation:SecretRotation", "name": "unrelated",
         "inputs": {"secretId": "redis-auth-id"}},
    ]}
    plan = tfplan.render_to_plan(render)
    rotation = configured(plan, "aws_secretsmanager_secret_rotation.redis_auth_rotation")
    assert rotation["expressions"] == {"secret_id": {"references": ["aws_secretsmanager_secret.redis_auth.id",
                                                                    "aws_secretsmanager_secret.redis_auth"]}}
    assert planned(plan, "aws_secretsmanager_secret_rotation.redis_auth_rotation")["values"] == {
        "rotation_rules": [{"automatically_after_days": 30}]}
    assert configured(plan, "aws_secretsmanager_secret_rotation.unrelated")["expressions"] == {}
    assert planned(plan, "aws_secretsmanager_secret_rotation.unrelated")["values"] == {"secret_id": "redis-auth-id"}


def test_two_pulumi_names_that_become_one_terraform_address_are_refused() -> None:
    render = {"resources": [{"type": "aws:sns/topic:Topic", "name": "a-b", "inputs": {}},
                            {"type": "aws:sns/topic:Topic", "name": "a_b", "inputs": {}}]}
    with pytest.raises(tfplan.PlanError, match=r"both become aws_sns_topic\.a_b"):
        tfplan.render_to_plan(render)


def test_values_inside_documents_and_ids_outside_the_render_stay_literal() -> None:
    plan = plan_of("prod-sentinel")
    policy = planned(plan, "aws_iam_role_policy.redis_host_policy")["values"]["policy"]
    # A JSON string, as the provider stores it, with the key's ARN inside it left as it is.
    doc = json.loads(policy)
    assert any(s["Resource"] == planned(plan, "aws_kms_key.redis_kms")["values"].get("arn", s["Resource"])
               for s in doc["Statement"])
    assert "arn:aws:kms:" in policy
    # The subnet is not declared by the program: its id is a literal.
    assert planned(plan, "aws_network_interface.redis_node_0_eni")["values"]["subnet_id"].startswith("subnet-")
    assert "subnet_id" not in configured(plan, "aws_network_interface.redis_node_0_eni")["expressions"]


def test_blocks_become_lists_maps_stay_objects_and_names_are_terraforms() -> None:
    plan = plan_of("prod-sentinel")
    lt = planned(plan, "aws_launch_template.redis_lt")["values"]
    assert lt["metadata_options"] == [{"http_endpoint": "enabled", "http_put_response_hop_limit": 1,
                                       "http_tokens": "required", "instance_metadata_tags": "disabled"}]
    assert isinstance(lt["tags"], dict) and lt["tags"]["stack"] == "prod-sentinel"
    assert isinstance(lt["block_device_mappings"][0]["ebs"], list)
    dlm = planned(plan, "aws_dlm_lifecycle_policy.redis_snapshots")["values"]["policy_details"][0]
    assert "schedule" in dlm and "schedules" not in dlm
    assert isinstance(dlm["target_tags"], dict)
    archive = planned(plan, "aws_s3_object.lambda_code_archive")["values"]
    assert archive["source"].startswith("AssetArchive:infra,ratelimit,") and archive["key"] == "unsigned/functions.zip"
    lifecycle = planned(plan, "aws_s3_bucket_lifecycle_configuration.lambda_code_lifecycle")["values"]
    assert len(lifecycle["rule"]) == 2 and "rules" not in lifecycle
    sse = planned(plan, "aws_s3_bucket_server_side_encryption_configuration.lambda_code_encryption")["values"]
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    rg = planned(plan_of("prod"), "aws_elasticache_replication_group.redis_rg")["values"]
    assert len(rg["log_delivery_configuration"]) == 2 and "log_delivery_configurations" not in rg


def test_user_data_base64_is_planned_as_ec2_gets_it_from_the_decoded_render() -> None:
    # The render shows the Sentinel hosts' script decoded (redisops.render); the plan holds
    # Terraform's user_data_base64, gzip+base64 again, and no plain user_data.
    render = tfplan.load_render(ROOT / RENDER_DIR / "prod-sentinel.yaml")
    scripts = {r["name"]: r["inputs"]["userDataBase64"][user_data.RENDER_KEY] for r in render["resources"]
               if r["type"] == "aws:ec2/instance:Instance"}
    assert set(scripts) == {"redis-node-0", "redis-node-1", "redis-node-2"}
    plan = tfplan.render_to_plan(render)
    for name, script in scripts.items():
        values = planned(plan, f"aws_instance.{name.replace('-', '_')}")["values"]
        assert "user_data" not in values and script.startswith("#!/bin/bash\n")
        assert user_data.unpack(values["user_data_base64"]) == script
        assert user_data.raw_size(values["user_data_base64"]) <= user_data.MAX_BYTES


def test_the_launch_template_carries_what_the_instance_suppressions_point_to() -> None:
    # policy/checkov-suppressions.yaml suppresses CKV_AWS_79/8/126/135 and CKV2_AWS_41 on the
    # instances because these settings live in their launch template: this holds them there.
    plan = plan_of("prod-sentinel")
    lt = planned(plan, "aws_launch_template.redis_lt")["values"]
    assert lt["metadata_options"][0]["http_tokens"] == "required"  # CKV_AWS_79
    assert [m["ebs"][0]["encrypted"] for m in lt["block_device_mappings"]] == ["true"]  # CKV_AWS_8
    assert lt["monitoring"] == [{"enabled": True}]  # CKV_AWS_126
    assert lt["ebs_optimized"] == "true"  # CKV_AWS_135
    assert configured(plan, "aws_launch_template.redis_lt")["expressions"]["iam_instance_profile"] == [
        {"arn": {"references": ["aws_iam_instance_profile.redis_host_profile.arn",
                                "aws_iam_instance_profile.redis_host_profile"]}}]  # CKV2_AWS_41
    instances = [r for r in plan["configuration"]["root_module"]["resources"] if r["type"] == "aws_instance"]
    assert len(instances) == 3
    assert all(i["expressions"]["launch_template"][0]["id"]["references"][1] == "aws_launch_template.redis_lt"
               for i in instances)


@needs_checkov  # CHECKOV_PY imports checkov, installed when its entry point is
def test_checkovs_own_plan_parser_reads_the_references(tmp_path: Path) -> None:
    # checkov/terraform/plan_parser.py `_add_references`: an attribute missing or null in values
    # takes the first reference from the configuration's expressions; its graph connects on that.
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_of("prod-sentinel")))
    code = ("import json, sys\nfrom checkov.terraform.plan_parser import parse_tf_plan\n"
            "tf, _ = parse_tf_plan(sys.argv[1], {})\n"
            "out = {}\n"
            "for block in tf['resource']:\n"
            "    for rtype, named in block.items():\n"
            "        for name, conf in named.items():\n"
            "            if f'{rtype}.{name}' in sys.argv[2:]:\n"
            "                out[f'{rtype}.{name}'] = {k: conf[k] for k in ('security_groups', 'launch_template') "
            "if k in conf}\n"
            "print(json.dumps(out, default=str))\n")
    wanted = ["aws_network_interface.redis_node_0_eni", "aws_instance.redis_node_0"]
    proc = subprocess.run([str(CHECKOV_PY), "-c", code, str(path), *wanted], capture_output=True, text=True,
                          timeout=120, check=True)
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed["aws_network_interface.redis_node_0_eni"]["security_groups"] == [["aws_security_group.redis_sg.id"]]
    assert parsed["aws_instance.redis_node_0"]["launch_template"][0]["id"] == ["aws_launch_template.redis_lt.id"]


# ---- suppressions (no checkov needed) ----------------------------------------------------------------
def finding(check: str, resource: str) -> sc.Finding:
    return sc.Finding(check, "a check", resource)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_a_suppression_covers_its_check_resource_pattern_and_stacks_only(tmp_path: Path) -> None:
    sup = sc.load_suppressions(write(tmp_path, """
suppressions:
  - check: [CKV_AWS_8, CKV_AWS_79]
    resource: aws_instance.redis_node_*
    stacks: [prod-sentinel]
    reason: settings live in the launch template
"""), STACKS)
    failed = [finding("CKV_AWS_8", "aws_instance.redis_node_0"), finding("CKV_AWS_79", "aws_instance.redis_node_0"),
              finding("CKV_AWS_8", "aws_instance.other"), finding("CKV_AWS_126", "aws_instance.redis_node_0")]
    result = sc.apply_suppressions("prod-sentinel", 3, [], failed, sup)
    assert [f.resource for f, _ in result.suppressed] == ["aws_instance.redis_node_0"] * 2
    assert result.failed == failed[2:] and not result.ok
    # The same findings on a stack the entry does not name are failures, and nothing is stale there.
    other = sc.apply_suppressions("prod", 3, [], failed[:2], sup)
    assert other.failed == failed[:2] and other.stale == []


def test_a_suppression_matching_no_failure_is_stale_and_fails_the_scan(tmp_path: Path) -> None:
    sup = sc.load_suppressions(write(tmp_path, """
suppressions:
  - check: [CKV2_AWS_57, CKV_AWS_26]
    resource: aws_secretsmanager_secret.*
    stacks: [prod]
    reason: rotation lands with issue 13 §1
"""), STACKS)
    result = sc.apply_suppressions("prod", 3, [], [finding("CKV2_AWS_57", "aws_secretsmanager_secret.redis_auth")], sup)
    assert [s.check for s in result.stale] == ["CKV_AWS_26"] and not result.ok
    text = sc.summary_text([result])
    assert "STALE      CKV_AWS_26 aws_secretsmanager_secret.*: matches no failure on prod" in text
    assert "| prod | 0 | 0 | 1 | 1 |" in sc.summary_markdown([result])
    # Once the rotation lands (no CKV2_AWS_57 failure), its entry goes stale too.
    assert [s.check for s in sc.apply_suppressions("prod", 3, [], [], sup).stale] == ["CKV2_AWS_57", "CKV_AWS_26"]


@pytest.mark.parametrize(("entry", "says"), [
    ("- check: CKV_AWS_8\n    resource: x\n    stacks: [prod]", "missing or empty keys ['reason']"),
    ("- check: CKV_AWS_8\n    resource: x\n    stacks: [prod]\n    reason: a b c d\n    owner: me",
     "unknown keys ['owner']"),
    ("- check: CKV_AWS_8\n    resource: x\n    stacks: [staging]\n    reason: a b c d",
     "stacks ['staging'] have no Pulumi.<stack>.yaml; allowed: dev, prod, prod-sentinel"),
    ("- check: CKV_AWS_8\n    resource: x\n    stacks: prod\n    reason: a b c d", "expected a list of stack names"),
    ("- check: AWS_8\n    resource: x\n    stacks: [prod]\n    reason: a b c d", "expected a checkov check id"),
    ("- check: CKV_AWS_8\n    resource: x\n    stacks: [prod]\n    reason: not needed", "too short"),
])
def test_a_bad_suppression_entry_is_refused_naming_the_key(tmp_path: Path, entry: str, says: str) -> None:
    with pytest.raises(sc.ScanError, match="suppression #1") as caught:
        sc.load_suppressions(write(tmp_path, f"suppressions:\n  {entry}\n"), STACKS)
    assert says in str(caught.value)


# ---- checkov on the committed renders -----------------------------------------------------------------
REGRESSED = "prod-regressed"  # the negative control: prod with one log group's key and retention removed
UNREPLICATED = "prod-unreplicated"  # prod with alerting.logReplicaRegion: off
CONTROLS = (REGRESSED, UNREPLICATED)


def regressed_render() -> tuple[dict[str, Any], str]:
    render = tfplan.load_render(ROOT / RENDER_DIR / "prod.yaml")
    group = next(r for r in render["resources"] if r["type"] == "aws:cloudwatch/logGroup:LogGroup")
    del group["inputs"]["kmsKeyId"], group["inputs"]["retentionInDays"]
    return render, f"aws_cloudwatch_log_group.{tfplan.resource_name(group['name'])}"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sc.StackScan]]:
    """Every stack, and the negative control, scanned by one checkov run with no suppression
    applied: all failures are in `failed`."""
    root = tmp_path_factory.mktemp("scan")
    (root / RENDER_DIR).mkdir(parents=True)
    for stack in STACKS:
        (root / f"Pulumi.{stack}.yaml").write_text((ROOT / f"Pulumi.{stack}.yaml").read_text())
        (root / RENDER_DIR / f"{stack}.yaml").write_text((ROOT / RENDER_DIR / f"{stack}.yaml").read_text())
    (root / f"Pulumi.{REGRESSED}.yaml").write_text((ROOT / "Pulumi.prod.yaml").read_text())
    (root / RENDER_DIR / f"{REGRESSED}.yaml").write_text(yaml.safe_dump(regressed_render()[0]))
    prod = (ROOT / "Pulumi.prod.yaml").read_text()
    assert "logReplicaRegion: eu-central-1" in prod
    (root / f"Pulumi.{UNREPLICATED}.yaml").write_text(prod.replace("logReplicaRegion: eu-central-1",
                                                                     "logReplicaRegion: \"off\""))
    (root / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (root / RENDER_DIR / f"{UNREPLICATED}.yaml").write_text(render_stack(UNREPLICATED, root=root))
    (root / sc.CHECKOV_VENV).symlink_to(ROOT / sc.CHECKOV_VENV)
    empty = root / "none.yaml"
    empty.write_text("suppressions: []\n")
    yield {r.stack: r for r in sc.scan(root=root, suppressions_path=empty)}


@needs_checkov
@pytest.mark.slow
def test_every_failure_on_every_render_is_covered_and_no_suppression_is_stale(raw: dict[str, sc.StackScan]) -> None:
    suppressions = sc.load_suppressions(ROOT / sc.SUPPRESSIONS, STACKS)
    results = [sc.apply_suppressions(s, r.resources, r.passed, r.failed, suppressions) for s, r in raw.items()
               if s not in CONTROLS]
    assert sorted(s for s in raw if s not in CONTROLS) == sorted(STACKS)
    assert [(r.stack, r.failed, r.stale) for r in results if not r.ok] == [], sc.summary_text(results)
    # The AWS stacks were really scanned (dev has only docker/random/tls resources, which checkov
    # has no rule for).
    assert all(len(raw[s].passed) > 50 for s in ("prod", "prod-sentinel"))


@needs_checkov
@pytest.mark.slow
def test_security_groups_are_seen_attached_through_references(raw: dict[str, sc.StackScan]) -> None:
    # CKV2_AWS_5 failed on the first conversion without references (issue 13).
    groups = ["redis_sg", "rotation_sg", "smoke_sg"]
    for stack in ("prod", "prod-sentinel"):
        passed = {f.resource for f in raw[stack].passed if f.check_id == "CKV2_AWS_5"}
        assert passed == {f"aws_security_group.{g}" for g in groups}, stack


@needs_checkov
@pytest.mark.slow
def test_log_groups_are_encrypted_and_kept_a_year_in_prod(raw: dict[str, sc.StackScan]) -> None:
    # Issue 13 §2, as checkov sees it: KMS (CKV_AWS_158) and >= 365 days (CKV_AWS_338) on every group.
    for stack in ("prod", "prod-sentinel"):
        groups = {r["address"] for r in plan_of(stack)["planned_values"]["root_module"]["resources"]
                  if r["type"] == "aws_cloudwatch_log_group"}
        assert groups
        for check in ("CKV_AWS_158", "CKV_AWS_338"):
            assert {f.resource for f in raw[stack].passed if f.check_id == check} == groups, (stack, check)


@needs_checkov
@pytest.mark.slow
def test_the_host_smoke_and_rotation_policies_pass_the_iam_checks_without_suppression(
        raw: dict[str, sc.StackScan]) -> None:
    # ssm:UpdateInstanceInformation and the ENI actions are scoped; PutMetricData, X-Ray and the
    # ssmmessages/ec2messages actions take no resource ARN (cloudsplaining knows it).
    for stack, policies in {"prod": ["smoke_policy", "rotation_policy"],
                            "prod-sentinel": ["smoke_policy", "rotation_policy", "redis_host_policy"]}.items():
        for check in ("CKV_AWS_290", "CKV_AWS_355"):
            passed = {f.resource for f in raw[stack].passed if f.check_id == check}
            assert {f"aws_iam_role_policy.{p}" for p in policies} <= passed, (stack, check)


@needs_checkov
@pytest.mark.slow
def test_the_lambdas_trace_cap_concurrency_and_every_secret_rotates(raw: dict[str, sc.StackScan]) -> None:
    # CKV_AWS_50 (X-Ray), CKV_AWS_115 (reserved concurrency) fixed on both functions; CKV2_AWS_57
    # passes on every secret now that the rotation schedules reference them (issue 13 §1).
    for stack in ("prod", "prod-sentinel"):
        passed = {(f.check_id, f.resource) for f in raw[stack].passed}
        for fn in ("smoke_fn", "rotation_fn"):
            assert {("CKV_AWS_50", f"aws_lambda_function.{fn}"), ("CKV_AWS_115", f"aws_lambda_function.{fn}")} <= passed
        secrets = {r["address"] for r in plan_of(stack)["planned_values"]["root_module"]["resources"]
                   if r["type"] == "aws_secretsmanager_secret"}
        assert secrets and {r for c, r in passed if c == "CKV2_AWS_57"} == secrets, stack


@needs_checkov
@pytest.mark.slow
def test_the_code_bucket_logs_and_the_log_bucket_passes_ckv_aws_18_only_through_its_target_reference(
        raw: dict[str, sc.StackScan]) -> None:
    # CKV_AWS_18 (checkov/terraform/checks/graph_checks/aws/S3BucketLogging.json at 3.3.30) passes
    # a bucket with a `logging` block or *any* aws_s3_bucket_logging connected to it in the graph.
    # The code bucket passes because it logs (its suppression is gone). The log bucket passes only
    # because the logging resource names it as target_bucket: it does not log itself, as AWS
    # advises (docs/security-scan.md says so). What would make it really log is pinned absent here.
    for stack in ("prod", "prod-sentinel"):
        passed = {f.resource for f in raw[stack].passed if f.check_id == "CKV_AWS_18"}
        assert {"aws_s3_bucket.lambda_code_bucket", "aws_s3_bucket.lambda_code_logs_bucket"} <= passed, stack
        plan = plan_of(stack)
        loggings = {r["address"]: r for r in plan["configuration"]["root_module"]["resources"]
                    if r["type"] == "aws_s3_bucket_logging"}
        logging = loggings["aws_s3_bucket_logging.lambda_code_logs_logging"]
        assert logging["expressions"]["bucket"]["references"][1] == "aws_s3_bucket.lambda_code_bucket"
        assert logging["expressions"]["target_bucket"]["references"][1] == "aws_s3_bucket.lambda_code_logs_bucket"
        assert "logging" not in planned(plan, "aws_s3_bucket.lambda_code_logs_bucket")["values"]
        # Every other S3 check that applies passes on the log bucket: SSE-S3 default encryption is
        # the only encryption it may have (CKV_AWS_145, suppressed); it replicates (CKV_AWS_144).
        failed = {f.check_id for f in raw[stack].failed if f.resource == "aws_s3_bucket.lambda_code_logs_bucket"}
        assert failed == {"CKV_AWS_145"}, stack
        log_passed = {(f.check_id, f.resource) for f in raw[stack].passed if "lambda_code_logs" in f.resource}
        assert {(c, "aws_s3_bucket.lambda_code_logs_bucket") for c in (
            "CKV_AWS_21", "CKV2_AWS_6", "CKV2_AWS_61", "CKV2_AWS_62", "CKV_AWS_19", "CKV_AWS_144")} | {
            ("CKV_AWS_300", "aws_s3_bucket_lifecycle_configuration.lambda_code_logs_lifecycle"),
            ("CKV2_AWS_65", "aws_s3_bucket_ownership_controls.lambda_code_logs_ownership"),
            ("CKV_AWS_70", "aws_s3_bucket_policy.lambda_code_logs_policy")} <= log_passed, stack


REPLICA = "aws_s3_bucket.lambda_code_log_replica_bucket"
REPLICA_LOGS = "aws_s3_bucket.lambda_code_log_replica_logs_bucket"
S3_BUCKET_CHECKS = ("CKV_AWS_18", "CKV_AWS_21", "CKV2_AWS_6", "CKV2_AWS_61", "CKV2_AWS_62", "CKV_AWS_144")


@needs_checkov
@pytest.mark.slow
def test_the_access_logs_replicate_to_a_second_region_and_the_replica_buckets_pass_the_s3_checks(
        raw: dict[str, sc.StackScan]) -> None:
    # CKV_AWS_144 (graph_checks/aws/S3BucketReplicationConfiguration.json) passes a bucket connected
    # to an aws_s3_bucket_replication_configuration with an Enabled rule: the conversion keeps the
    # `bucket` and `destination.bucket` references, so each of the three buckets is connected.
    for stack in ("prod", "prod-sentinel"):
        passed = {(f.check_id, f.resource) for f in raw[stack].passed}
        failed = {(f.check_id, f.resource) for f in raw[stack].failed}
        for bucket in (REPLICA, REPLICA_LOGS):
            assert {(c, bucket) for c in S3_BUCKET_CHECKS} <= passed, (stack, bucket)
        # The replica is SSE-KMS (a key of its own in the second region); its log destination
        # cannot be (CKV_AWS_145, suppressed with L1's reason). Nothing else fails on them.
        assert ("CKV_AWS_145", REPLICA) in passed and ("CKV_AWS_7", "aws_kms_key.lambda_code_log_replica_kms") in passed
        assert {f for f in failed if "log_replica" in f[1] or "lambda_code_logs" in f[1]} == {
            ("CKV_AWS_145", REPLICA_LOGS), ("CKV_AWS_145", "aws_s3_bucket.lambda_code_logs_bucket")}, stack
        plan = plan_of(stack)
        replications = {r["address"]: r for r in plan["configuration"]["root_module"]["resources"]
                        if r["type"] == "aws_s3_bucket_replication_configuration"}
        ends = {(c["expressions"]["bucket"]["references"][1],
                 c["expressions"]["rule"][0]["destination"][0]["bucket"]["references"][1]) for c in replications.values()}
        assert ends == {("aws_s3_bucket.lambda_code_logs_bucket", REPLICA),
                        (REPLICA, "aws_s3_bucket.lambda_code_logs_bucket"),
                        (REPLICA_LOGS, "aws_s3_bucket.lambda_code_logs_bucket")}, stack
        assert {planned(plan, a)["values"].get("region") for a in replications} == {None, "eu-central-1"}


@needs_checkov
@pytest.mark.slow
def test_a_stack_that_turns_the_replica_off_fails_ckv_aws_144_on_its_log_bucket_unsuppressed(
        raw: dict[str, sc.StackScan]) -> None:
    # `off` is an explicit opt-out with a visible cost (docs/security-scan.md): judged with prod's
    # suppressions, exactly the log bucket's cross-region replication check is left failing.
    result = sc.apply_suppressions("prod", raw[UNREPLICATED].resources, raw[UNREPLICATED].passed,
                                   raw[UNREPLICATED].failed, sc.load_suppressions(ROOT / sc.SUPPRESSIONS, STACKS))
    assert {(f.check_id, f.resource) for f in result.failed} == {("CKV_AWS_144", "aws_s3_bucket.lambda_code_logs_bucket")}
    assert not [f for f in raw[UNREPLICATED].passed + raw[UNREPLICATED].failed if "log_replica" in f.resource]
    assert result.stale == []  # the CKV_AWS_145 entry's pattern still covers the one log bucket


def test_scan_refuses_an_unknown_stack_before_running_checkov() -> None:
    from typer.testing import CliRunner

    from redisops.cli import app

    result = CliRunner().invoke(app, ["scan", "--stack", "staging"])
    assert result.exit_code == 2
    assert "stacks ['staging'] have no Pulumi.<stack>.yaml; allowed: dev, prod, prod-sentinel or all" in (
        result.output + (result.stderr if result.stderr_bytes is not None else ""))



@needs_checkov
@pytest.mark.slow
def test_a_regression_in_a_render_fails_the_scan_and_names_the_check(raw: dict[str, sc.StackScan]) -> None:
    # The prod render with one log group unencrypted and without retention, judged with prod's
    # suppressions: exactly the regression is left, named by its rules (no KMS key, no
    # retention, less than a year).
    address = regressed_render()[1]
    result = sc.apply_suppressions("prod", raw[REGRESSED].resources, raw[REGRESSED].passed, raw[REGRESSED].failed,
                                   sc.load_suppressions(ROOT / sc.SUPPRESSIONS, STACKS))
    assert {(f.check_id, f.resource) for f in result.failed} == {
        ("CKV_AWS_158", address), ("CKV_AWS_66", address), ("CKV_AWS_338", address)}
    assert result.stale == []
    assert not result.ok and f"FAILED     CKV_AWS_158 {address}" in sc.summary_text([result])
