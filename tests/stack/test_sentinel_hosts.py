"""Stack tests (mocks) for the `sentinel` target: three EC2 hosts running redis + Sentinel.

The config is the committed Pulumi.prod-sentinel.yaml and a variant of Pulumi.prod.yaml with
`target: sentinel`; every security-relevant property is asserted on what the program declares.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from infra import versions as V
from infra.components.package_floors import METRIC as BOOT_REFUSED_METRIC
from infra.components.package_floors import check_call
from infra.components.rotation import rotation_log_group_name
from infra.components.sentinel_hosts import (
    CW_ROWS,
    EXPORTER_CA_FILE,
    HOST_FILES,
    SESSION_MANAGER_ACTIONS,
    TLS_HOST_FILES,
    SentinelHostsArgs,
    dlm_description,
    exporter_args,
    user_data,
)
from infra.components.smoke_function import log_group_name as smoke_log_group_name
from infra.components.tls_renewal import RENEW_SCRIPT
from infra.errors import SettingError, SettingsErrors
from infra.keypolicy import KeyUse, missing
from infra.monitoring.cloudwatch import TLS_DAYS_CRITICAL
from infra.settings import parse_settings
from infra.thresholds import DEFAULT_THRESHOLDS
from infra.user_data import raw_size, unpack
from redis_conf.sentinel import MASTER_NAME
from redisops.mockrun import RecordingMocks
from tests.support.pulumi_harness import (
    LAMBDA_COMPONENTS,
    StackRun,
    load_stack_file,
    run_program,
    run_stack_file,
    unwrap_secret,
    without_component,
)

SMOKE_FUNCTION = "redisstack:aws:SmokeFunction"

ROOT = Path(__file__).resolve().parents[2]
APP_SG = "sg-0a1b2c3d4e5f60aa1"
T_INSTANCE = "aws:ec2/instance:Instance"
T_PARAM = "aws:ssm/parameter:Parameter"
T_IN = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
T_OUT = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
T_VOLUME = "aws:ebs/volume:Volume"
T_ATTACH = "aws:ec2/volumeAttachment:VolumeAttachment"
T_LT = "aws:ec2/launchTemplate:LaunchTemplate"


def script_of(inst: Any) -> str:
    """The cloud-init script an instance boots with: its userDataBase64 (gzip+base64) decoded."""
    assert "userData" not in inst.inputs, "the script goes compressed, in userDataBase64 only"
    packed = inst.inputs["userDataBase64"]
    assert isinstance(packed, str), "user data must be plain (not secret): it holds no secret"
    return unpack(packed)


def prod_variant(**overrides: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Pulumi.prod.yaml switched to the sentinel target (it already lists 3 subnets)."""
    config, secret = load_stack_file("Pulumi.prod.yaml")
    config = {**config, "target": "sentinel", "engineVersion": "7.0", **overrides}
    return config, secret


@cache
def prod_sentinel() -> StackRun:
    # The Lambda components (the smoke function on the hosts' group too) have their own tests
    # (tests/stack/test_smoke_function.py, test_rotation.py, test_code_signing.py), which share this run.
    return without_component(run_stack_file("prod-sentinel"), *LAMBDA_COMPONENTS)


def secrets_of(run: StackRun) -> list[str]:
    """Every secret value the stack holds: generated passwords and TLS private keys."""
    values = [r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")]
    values += [r.outputs["privateKeyPem"] for r in run.of_type("tls:index/privateKey:PrivateKey")]
    assert values
    return values


def params(run: StackRun) -> dict[str, str]:
    return {p.inputs["name"]: unwrap_secret(p.inputs["value"]) for p in run.of_type(T_PARAM)}


def test_three_instances_in_three_distinct_azs() -> None:
    run = prod_sentinel()
    assert len(run.of_type(T_INSTANCE)) == 3
    azs = run.outputs["availabilityZones"]
    assert len(azs) == 3 and len(set(azs)) == 3
    enis = run.of_type("aws:ec2/networkInterface:NetworkInterface")
    assert sorted(e.inputs["subnetId"] for e in enis) == sorted(
        load_stack_file("Pulumi.prod-sentinel.yaml")[0]["network"]["subnetIds"])
    # Each instance sits on its own fixed interface.
    assert sorted(i.inputs["primaryNetworkInterface"]["networkInterfaceId"] for i in run.of_type(T_INSTANCE)) == \
        sorted(f"{e.name}-id" for e in enis)


def test_subnets_sharing_an_az_are_refused() -> None:
    # The mock derives the AZ from the last hex digit modulo 4: ...1 and ...5 share one.
    config, secret = prod_variant(network={"vpcId": "vpc-0a1b2c3d4e5f60718", "appSecurityGroupIds": [APP_SG],
                                           "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60005",
                                                         "subnet-0a1b2c3d4e5f60002"]})
    with pytest.raises(Exception, match=r"network.subnetIds.*3 different availability zones"):
        run_program(config, stack="prod", secret_keys=secret)


def test_imdsv2_required_and_volumes_encrypted_with_the_stack_key() -> None:
    run = prod_sentinel()
    lt = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    md = lt.inputs["metadataOptions"]
    assert md["httpTokens"] == "required" and md["httpEndpoint"] == "enabled"
    assert md["httpPutResponseHopLimit"] == 1
    key_arn = run.one("aws:kms/key:Key", "redis-kms").outputs["arn"]
    devices = {d["deviceName"]: d["ebs"] for d in lt.inputs["blockDeviceMappings"]}
    # Only the (disposable) root volume comes from the template; the data lives on its own volume.
    assert set(devices) == {"/dev/xvda"}
    assert devices["/dev/xvda"]["encrypted"] == "true" and devices["/dev/xvda"]["kmsKeyId"] == key_arn
    volumes = run.of_type(T_VOLUME)
    assert len(volumes) == 3
    for vol in volumes:
        assert vol.inputs["encrypted"] is True and vol.inputs["kmsKeyId"] == key_arn
        assert vol.inputs["size"] == 20 and vol.inputs["type"] == "gp3"
    # The instances take everything from the template: no override reopens IMDSv1.
    for inst in run.of_type(T_INSTANCE):
        assert inst.inputs["launchTemplate"]["id"] == f"{lt.name}-id"
        assert "metadataOptions" not in inst.inputs and "rootBlockDevice" not in inst.inputs


def test_data_volumes_survive_instances_and_updates_never_replace_hosts() -> None:
    run = prod_sentinel()
    lt = run.one(T_LT)
    # The AMI parameter moves with Debian point releases: the template keeps its first AMI.
    assert "imageId" in lt.ignore_changes
    instances = {i.inputs["tags"]["redisstack-node"]: i for i in run.of_type(T_INSTANCE)}
    enis = {e.name: e for e in run.of_type("aws:ec2/networkInterface:NetworkInterface")}
    volumes = {v.inputs["tags"]["redisstack-node"]: v for v in run.of_type(T_VOLUME)}
    attachments = {a.inputs["instanceId"]: a for a in run.of_type(T_ATTACH)}
    assert set(instances) == set(volumes) == {"node-0", "node-1", "node-2"}
    for node, inst in instances.items():
        # A pinned template version, not "$Latest"/"$Default" (re-resolved on every up), and
        # neither a template change nor a user-data change reaches a running host.
        assert not str(inst.inputs["launchTemplate"]["version"]).startswith("$")
        assert {"launchTemplate", "userDataBase64", "userData"} <= set(inst.ignore_changes)
        vol = volumes[node]
        assert vol.protect, "the data volume must be protected"
        eni = enis[inst.inputs["primaryNetworkInterface"]["networkInterfaceId"].removesuffix("-id")]
        assert eni.inputs["subnetId"][-1] in "0123456789abcdef"
        # Same AZ as the instance (its ENI's subnet; the mock derives the AZ from the last digit).
        assert vol.inputs["availabilityZone"] == f"eu-west-1{'abcd'[int(eni.inputs['subnetId'][-1], 16) % 4]}"
        att = attachments[inst.outputs["id"]]
        assert att.inputs["volumeId"] == vol.outputs["id"] and att.inputs["deviceName"] == "/dev/sdf"
        assert att.inputs["stopInstanceBeforeDetaching"] is True and att.delete_before_replace
        # User data waits for exactly this volume and formats it only when it has no filesystem.
        ud = script_of(inst)
        assert f"DATA_VOLUME={vol.outputs['id']}\n" in ud
        assert "nvme-Amazon_Elastic_Block_Store_${DATA_VOLUME/-/}" in ud
        assert 'blkid "$DATA_DISK" >/dev/null || mkfs.ext4' in ud
    for d in lt.inputs["blockDeviceMappings"]:
        assert d["deviceName"] != "/dev/sdf"


def test_plain_text_is_refused_for_the_sentinel_target() -> None:
    config, secret = prod_variant(tls=False)
    with pytest.raises(SettingsErrors, match="requires TLS"):
        run_program(config, stack="prod", secret_keys=secret)


def test_user_data_without_tls_fetches_no_certificates() -> None:
    ud = user_data(region="eu-west-1", prefix="/redisstack/s/redis", node="node-0", tls=False,
                   exporter=exporter_args("10.0.1.10", tls=False), agent_config="{}", agent_prometheus="{}",
                   data_volume_id="vol-0123456789abcdef0", namespace="redisstack/redisstack/s")
    assert "fetch tls/" not in ud and "-tls-ca-cert-file" not in ud
    assert "DATA_VOLUME=vol-0123456789abcdef0\n" in ud


def test_first_boot_writes_the_current_rotated_passwords_before_redis_starts() -> None:
    # Rotations change passwords in Secrets Manager and on the running nodes only
    # (tests/integration/test_rotation_boot.py runs these lines).
    run = prod_sentinel()
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        app = ud.index(f"current_password default {run.outputs['appSecretArn']}\n")
        admin = ud.index(f"current_password admin {run.outputs['adminSecretArn']}\n")
        fetched = max(ud.index(f"\nfetch {leaf} ") for leaf in ("users.acl", "sentinel.conf"))
        assert fetched < min(app, admin) and max(app, admin) < ud.index("systemctl enable --now redis-server")


def test_no_secret_in_user_data() -> None:
    run = prod_sentinel()
    secrets = secrets_of(run)
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        assert isinstance(ud, str), "user data must be plain text that holds no secret"
        for s in secrets:
            assert s not in ud
        assert not re.search(r"masterauth|requirepass|auth-pass|sentinel-pass|BEGIN .*PRIVATE KEY", ud)
        # What it does instead: fetch its own files from SSM with decryption.
        node = inst.inputs["tags"]["redisstack-node"]
        assert f"PREFIX=/redisstack/{run.outputs['parameterPrefix'].split('/')[2]}/redis/{node}" in ud
        assert "aws ssm get-parameter" in ud and "--with-decryption" in ud
        for leaf in HOST_FILES:
            assert f"fetch {leaf} " in ud
        assert "fetch tls/server.key" in ud
        assert "systemctl enable --now redis-server" in ud and "systemctl enable --now redis-sentinel" in ud
        # The exporter (user prometheus) cannot enter /etc/redis/tls: it gets its own CA copy.
        ca_fetch = f"fetch tls/ca.crt {EXPORTER_CA_FILE} prometheus 0444"
        exporter = re.search(r'ARGS="([^"]*)"', ud)
        assert exporter
        assert ca_fetch in ud and f"-tls-ca-cert-file {EXPORTER_CA_FILE}" in exporter.group(1)
        assert "/etc/redis/tls" not in exporter.group(1)
        # apt over HTTPS only (no port 80 egress): sources are rewritten before apt-get update.
        assert ud.index("https://deb.debian.org/") < ud.index("apt-get update")


def test_files_are_secure_string_parameters_with_the_secrets() -> None:
    run = prod_sentinel()
    key_arn = run.one("aws:kms/key:Key", "redis-kms").outputs["arn"]
    prefix = run.outputs["parameterPrefix"]
    ps = run.of_type(T_PARAM)
    expected = {f"{prefix}/node-{i}/{leaf}" for i in range(3) for leaf in (*HOST_FILES, *TLS_HOST_FILES)}
    assert {p.inputs["name"] for p in ps} == expected
    for p in ps:
        assert p.inputs["type"] == "SecureString" and p.inputs["keyId"] == key_arn
        assert "value" in p.additional_secret_outputs and p.delete_before_replace
    values = params(run)
    sentinel_pw = next(r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")
                       if r.name == "redis-sentinel-password")
    assert f"sentinel auth-pass {MASTER_NAME} {sentinel_pw}" in values[f"{prefix}/node-0/sentinel.conf"]


def test_rendered_topology_names_the_fixed_ips_and_settings() -> None:
    run = prod_sentinel()
    prefix = run.outputs["parameterPrefix"]
    values = params(run)
    ips = [n.split(":")[0] for n in run.outputs["redisNodes"]]
    assert len(set(ips)) == 3
    for i, ip in enumerate(ips):
        rc = values[f"{prefix}/node-{i}/redis.conf"]
        sc = values[f"{prefix}/node-{i}/sentinel.conf"]
        assert f"bind {ip}\n" in rc and f"bind {ip}\n" in sc
        assert "tls-replication yes" in rc and "tls-replication yes" in sc
        assert "masteruser replica" in rc and "min-replicas-to-write 1\n" in rc and "min-replicas-max-lag 10\n" in rc
        assert ("replicaof" in rc) is (i != 0)
        if i:
            assert f"replicaof {ips[0]} 6379" in rc
        assert f"sentinel monitor {MASTER_NAME} {ips[0]} 6379 2" in sc
        assert f"sentinel down-after-milliseconds {MASTER_NAME} 5000" in sc
        assert f"sentinel failover-timeout {MASTER_NAME} 60000" in sc
        assert f"sentinel parallel-syncs {MASTER_NAME} 1" in sc
        assert "protected-mode yes" in sc and f"sentinel announce-ip {ip}" in sc
        assert "user default on #" in sc  # Sentinels require a password
        # IPs, not DNS names: hostnames stay off.
        assert "announce-hostnames" not in sc
        exporter = json.loads(values[f"{prefix}/node-{i}/exporter-password.json"])
        assert list(exporter) == [f"rediss://{ip}:6379"]


def test_security_group_admits_redis_and_sentinel_only_from_app_and_itself() -> None:
    run = prod_sentinel()
    sg = run.one("aws:ec2/securityGroup:SecurityGroup")
    sg_id = sg.outputs["id"]
    ingress = run.of_type(T_IN)
    assert {(r.inputs["fromPort"], r.inputs["toPort"]) for r in ingress} == {(6379, 6379), (26379, 26379)}
    sources = {(r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId")) for r in ingress}
    assert sources == {(6379, APP_SG), (6379, sg_id), (26379, APP_SG), (26379, sg_id)}
    assert all("cidrIpv4" not in r.inputs and "cidrIpv6" not in r.inputs for r in ingress)
    assert all(r.inputs["securityGroupId"] == sg_id for r in ingress)
    egress = run.of_type(T_OUT)
    to_self = {r.inputs["fromPort"] for r in egress if r.inputs.get("referencedSecurityGroupId") == sg_id}
    assert to_self == {6379, 26379}
    to_world = {r.inputs["fromPort"] for r in egress if r.inputs.get("cidrIpv4") == "0.0.0.0/0"}
    assert to_world == {443}, "hosts holding secrets get HTTPS egress only (apt over https)"
    assert all(r.inputs["fromPort"] == r.inputs["toPort"] for r in egress)
    for eni in run.of_type("aws:ec2/networkInterface:NetworkInterface"):
        assert eni.inputs["securityGroups"] == [sg_id]


def test_instance_role_reads_only_its_parameters() -> None:
    run = prod_sentinel()
    policy = json.loads(run.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ReadOwnParameters", "DecryptThroughSsmOnly", "PublishMetricsAsEmf", "SessionManagerOnly",
                           "SessionManagerRegistersThisAccountsInstances", "ReadAdminSecretForTlsReload",
                           "DecryptThroughSecretsManagerOnly", "PublishTlsDaysLeftInOwnNamespace", "ReadAppSecretAtBoot"}
    assert by_sid["ReadOwnParameters"]["Action"] == ["ssm:GetParameter"]
    assert by_sid["ReadOwnParameters"]["Resource"].endswith(f"parameter{run.outputs['parameterPrefix']}/*")
    dec = by_sid["DecryptThroughSsmOnly"]
    assert dec["Resource"] == run.one("aws:kms/key:Key", "redis-kms").outputs["arn"]
    assert dec["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}}
    assert all("*" not in a for s in policy["Statement"] for a in s["Action"])
    # The TLS renewal timer reads the admin secret (for CONFIG SET) and nothing else of Secrets Manager,
    # decrypting through Secrets Manager only, and publishes metrics only in its own namespace
    # (PutMetricData has no resource-level permissions; cloudwatch:namespace is its condition key).
    assert by_sid["ReadAdminSecretForTlsReload"]["Resource"] == run.outputs["adminSecretArn"]
    assert by_sid["DecryptThroughSecretsManagerOnly"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    assert by_sid["PublishTlsDaysLeftInOwnNamespace"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "redisstack/redisstack/prod-sentinel"}}
    # ... and first boot reads the app secret (current password after rotations: current_password_commands).
    assert by_sid["ReadAppSecretAtBoot"]["Resource"] == run.outputs["appSecretArn"]
    assert [s for s in policy["Statement"] if any(a.startswith("secretsmanager:") for a in s["Action"])] == [
        by_sid["ReadAdminSecretForTlsReload"], by_sid["ReadAppSecretAtBoot"]]
    # Session Manager without AmazonSSMManagedInstanceCore (ssm:GetParameter(s) on *): no other
    # statement reaches SSM parameters, no managed policy is attached to the host role.
    ssm = by_sid["SessionManagerOnly"]
    registers = by_sid["SessionManagerRegistersThisAccountsInstances"]
    assert sorted(ssm["Action"] + registers["Action"]) == sorted(SESSION_MANAGER_ACTIONS)
    assert not any(a.startswith("ssm:GetParameter") for a in ssm["Action"])
    # The one SSM action that takes a resource ARN is scoped to this account's instances (checkov
    # CKV_AWS_355/CKV_AWS_290); the rest take none.
    assert registers["Action"] == ["ssm:UpdateInstanceInformation"]
    assert registers["Resource"] == "arn:aws:ec2:eu-west-1:123456789012:instance/*"
    assert not any(a.startswith("ssm:") for a in ssm["Action"])
    reading = [s for s in policy["Statement"] if any(a.startswith("ssm:Get") for a in s["Action"])]
    assert reading == [by_sid["ReadOwnParameters"]]
    attached = [r for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if r.name.startswith("redis-host")]
    assert attached == []


def test_outputs_env_contract_is_secret_with_a_sentinel_url() -> None:
    run = prod_sentinel()
    assert "env" in run.secret_outputs
    env = run.outputs["env"]
    ips = [n.split(":")[0] for n in run.outputs["redisNodes"]]
    url = f"rediss+sentinel://{','.join(f'{ip}:26379' for ip in ips)}/{MASTER_NAME}"
    assert env["REDIS_URL"] == url == run.outputs["sentinelUrl"]
    assert env["REDIS_SENTINEL_MASTER"] == MASTER_NAME and env["REDIS_TLS"] == "true"
    app_pw = next(r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")
                  if r.name == "redis-app-password")
    assert env["REDIS_PASSWORD"] == app_pw == env["REDIS_SENTINEL_PASSWORD"] == run.outputs["sentinelPassword"]
    assert {"env", "adminPassword", "sentinelPassword"} <= run.secret_outputs
    assert env["RATE_LIMIT_GENERAL"] == "120,60"
    assert run.outputs["sentinelEndpoints"] == [f"{ip}:26379" for ip in ips]
    assert run.outputs["masterName"] == MASTER_NAME
    # Nothing secret in the plain outputs.
    plain = json.dumps({k: v for k, v in run.outputs.items() if k not in run.secret_outputs})
    for s in secrets_of(run):
        assert s not in plain


def test_snapshots_target_the_data_volumes_in_the_backup_window() -> None:
    run = prod_sentinel()
    lt = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    root_tags = next(t["tags"] for t in lt.inputs["tagSpecifications"] if t["resourceType"] == "volume")
    dlm = run.one("aws:dlm/lifecyclePolicy:LifecyclePolicy")
    details = dlm.inputs["policyDetails"]
    assert details["resourceTypes"] == ["VOLUME"]
    # The data volumes are backed up, the disposable root volumes are not.
    for vol in run.of_type(T_VOLUME):
        assert details["targetTags"].items() <= vol.inputs["tags"].items()
    assert not details["targetTags"].items() <= root_tags.items()
    schedule = details["schedules"][0]
    assert schedule["createRule"] == {"interval": 24, "intervalUnit": "HOURS", "times": "03:00"}
    assert schedule["retainRule"]["count"] == 14


def test_alarms_per_host_follow_the_thresholds_table() -> None:
    run = prod_sentinel()
    alarms = {a.name: a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    topic = run.one("aws:sns/topic:Topic").outputs["arn"]
    for i in range(3):
        sys_check = alarms[f"redis-node-{i}-system-check"]
        assert "arn:aws:automate:eu-west-1:ec2:recover" in sys_check.inputs["alarmActions"]
        assert topic in sys_check.inputs["alarmActions"]
        for t in DEFAULT_THRESHOLDS:
            for severity, line in t.lines():
                name = f"redis-node-{i}-{t.name}-{severity}"
                if t.name not in CW_ROWS:
                    assert name not in alarms
                    continue
                a = alarms[name]
                assert a.inputs["threshold"] == line
                assert a.inputs["alarmActions"] == [topic]
                queries = a.inputs["metricQueries"]
                dims = {q["metric"]["dimensions"]["node"] for q in queries if "metric" in q}
                assert dims == {f"node-{i}"}
    mem = alarms["redis-node-0-memory_usage-critical"].inputs["metricQueries"]
    assert next(q for q in mem if q.get("returnData"))["expression"] == "100 * m0 / m1"
    assert alarms["redis-node-0-redis_down-critical"].inputs["comparisonOperator"] == "LessThanThreshold"
    # The agent publishes counters as per-scrape deltas: the increase is their Sum (a DIFF of
    # deltas reads ~0 under steady evictions).
    for row in ("evicted_keys", "rejected_connections"):
        queries = alarms[f"redis-node-0-{row}-critical"].inputs["metricQueries"]
        [metric] = [q for q in queries if "metric" in q]
        assert metric["metric"]["stat"] == "Sum" and metric["metric"]["period"] == 60
        assert next(q for q in queries if q.get("returnData"))["expression"] == "m0"


def test_key_policy_lets_cloudwatch_use_the_key_for_exactly_the_metrics_log_group_and_alarm_topic() -> None:
    # CloudWatch Logs needs kms:EncryptionContext:aws:logs:arn naming the group
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html); SNS
    # passes aws:sns:topicArn (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
    run = prod_sentinel()
    key = run.one("aws:kms/key:Key", "redis-kms")
    group = run.one("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["kmsKeyId"] == key.outputs["arn"] and group.delete_before_replace
    assert group.inputs["name"] == "/redisstack/prod-sentinel/redis/metrics" == run.outputs["logGroups"]["metrics"]
    assert group.inputs["retentionInDays"] == 365  # AWS-target default (docs/decisions.md, "Log retention")
    topic = run.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert topic.inputs["name"] == "redisstack-prod-sentinel-redis-alarms"
    use = KeyUse("123456789012", "aws", "eu-west-1", alarm_topic_arns=(topic.outputs["arn"],),
                 log_group_arns=(group.outputs["arn"],))
    assert missing(key.inputs["policy"], use) == []
    other = KeyUse("123456789012", "aws", "eu-west-1",
                   log_group_arns=("arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/other",))
    assert [m for m in missing(key.inputs["policy"], other) if "CloudWatch Logs" in m]
    policy = json.loads(key.inputs["policy"])
    [logs] = [s for s in policy["Statement"] if s["Principal"].get("Service") == "logs.eu-west-1.amazonaws.com"]
    # The metrics group and the smoke and rotation functions' (same stack, same key), nothing else.
    functions = [f"arn:aws:logs:eu-west-1:123456789012:log-group:{n('redisstack', 'prod-sentinel')}"
                 for n in (smoke_log_group_name, rotation_log_group_name)]
    assert logs["Condition"] == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": sorted(
        [group.outputs["arn"], *functions])}}


def test_the_key_outlives_the_stack_like_the_volumes_it_encrypts() -> None:
    # The data volumes (protected, retained) and their DLM snapshots outlive `pulumi destroy`;
    # destroying their key would schedule its deletion and make all of them unreadable.
    run = prod_sentinel()
    key = run.one("aws:kms/key:Key", "redis-kms")
    assert key.protect and key.retain_on_delete
    for vol in run.of_type(T_VOLUME):
        assert vol.protect and vol.retain_on_delete and vol.inputs["kmsKeyId"] == key.outputs["arn"]


def test_replacing_a_host_deletes_it_first_so_its_primary_eni_is_free() -> None:
    # EC2: a primary network interface (device index 0) cannot be detached, and an interface in
    # use cannot be given to a second instance (InvalidNetworkInterface.InUse); an interface given
    # at launch is never deleted on termination ("You can specify true only if creating a new
    # network interface when launching an instance": botocore data/ec2/2016-11-15/service-2.json,
    # InstanceNetworkInterfaceSpecification.DeleteOnTermination). So a replacement must delete the
    # old instance first; the ENI (and its IP, named in every rendered file) stays.
    run = prod_sentinel()
    enis = {f"{e.name}-id": e for e in run.of_type("aws:ec2/networkInterface:NetworkInterface")}
    for inst in run.of_type(T_INSTANCE):
        assert inst.delete_before_replace, inst.name
        primary = inst.inputs["primaryNetworkInterface"]
        assert primary["networkInterfaceId"] in enis
        assert not primary.get("deleteOnTermination")
        eni = enis[primary["networkInterfaceId"]]
        assert not eni.delete_before_replace and "attachments" not in eni.inputs
    import botocore.session

    shape = botocore.session.get_session().get_service_model("ec2").shape_for("InstanceNetworkInterfaceSpecification")
    assert "only if creating a new network interface" in shape.members["DeleteOnTermination"].documentation


def test_the_documented_replacement_step_names_a_real_instance_urn() -> None:
    # docs/sentinel.md ("Replacing hosts") tells operators to run `pulumi up --replace <URN>` with
    # a URN template; it must resolve to the instances the program declares, and the doc must say
    # that the old host is deleted first (the ENI rule above).
    text = (ROOT / "docs" / "sentinel.md").read_text()
    section = text[text.index("### Replacing hosts"):text.index("## Who authenticates how")]
    match = re.search(r"`pulumi up --replace '(urn:pulumi:[^']+)'`", section)
    assert match, "the runbook step spells out the URN to replace"
    template = match.group(1)
    run = prod_sentinel()
    urns = sorted(i.urn for i in run.of_type(T_INSTANCE))
    expected = [template.replace("<stack>", "prod-sentinel").replace("<N>", str(i)) for i in range(3)]
    assert urns == expected
    assert "deleted first" in section and "InvalidNetworkInterface.InUse" in section


def test_user_data_installs_and_enables_the_ssm_agent_and_opens_no_port_for_it() -> None:
    # Debian AMIs ship no SSM agent; AWS publishes the .deb per region and architecture
    # (https://docs.aws.amazon.com/systems-manager/latest/userguide/agent-install-deb.html). The
    # agent connects out over HTTPS: nothing may open SSH or any other inbound port for it.
    run = prod_sentinel()
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        url = "https://s3.eu-west-1.amazonaws.com/amazon-ssm-eu-west-1/latest/debian_$ARCH/amazon-ssm-agent.deb"
        assert f'SSM_AGENT_URL="{url}"' in ud
        assert 'curl -fsSL -o /tmp/amazon-ssm-agent.deb "$SSM_AGENT_URL"' in ud
        assert ud.index("ARCH=$(dpkg --print-architecture)") < ud.index(url)
        assert "dpkg -i /tmp/amazon-ssm-agent.deb" in ud and "systemctl enable amazon-ssm-agent" in ud
        # Before apt and the long waits (data volume): a host whose package mirror or data volume
        # fails must still be reachable to find out why. The .deb needs no apt; without curl
        # (not yet installed by apt) python3 - which cloud-init needs - downloads it.
        assert ud.index("systemctl restart amazon-ssm-agent") < ud.index("apt-get update")
        assert ud.index("amazon-ssm-agent.deb") < ud.index("DATA_DISK=")
        assert "keyName" not in inst.inputs
    ports = {(r.inputs["fromPort"], r.inputs["toPort"]) for r in run.of_type(T_IN)}
    assert ports == {(6379, 6379), (26379, 26379)}
    assert "keyName" not in run.one(T_LT).inputs


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_user_data_is_valid_bash() -> None:
    run = prod_sentinel()
    for inst in run.of_type(T_INSTANCE):
        result = subprocess.run(["bash", "-n"], input=script_of(inst), text=True, capture_output=True,
                                timeout=30, check=False)
        assert result.returncode == 0, result.stderr


def test_user_data_installs_the_tls_renewal_timer_with_names_only() -> None:
    run = prod_sentinel()
    admin_arn = run.outputs["adminSecretArn"]
    ips = [n.split(":")[0] for n in run.outputs["redisNodes"]]
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        node = inst.inputs["tags"]["redisstack-node"]
        assert RENEW_SCRIPT.strip() in ud
        assert f"ADMIN_SECRET_ID={admin_arn}\n" in ud and f"REDIS_HOST={ips[int(node[-1])]}\n" in ud
        assert f"PREFIX=/redisstack/prod-sentinel/redis/{node}\n" in ud and f"NODE={node}\n" in ud
        assert "systemctl enable --now redisstack-tls-renew.timer" in ud
        # Sentinel (same files on 26379) restarts only while all three Sentinels are usable.
        assert f"SENTINEL_PORT=26379\nMASTER_NAME={MASTER_NAME}\nSENTINELS=3\n" in ud
        assert ud.index("systemctl enable --now redis-server") < ud.index("redisstack-tls-renew.timer")


def test_a_tls_expiry_alarm_watches_each_host() -> None:
    run = prod_sentinel()
    topic = run.one("aws:sns/topic:Topic").outputs["arn"]
    for i in range(3):
        alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", f"redis-node-{i}-tls-expiry").inputs
        assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == (
            "redisstack/redisstack/prod-sentinel", "TlsCertificateDaysLeft", {"node": f"node-{i}"})
        assert (alarm["statistic"], alarm["comparisonOperator"], alarm["threshold"]) == (
            "Minimum", "LessThanThreshold", TLS_DAYS_CRITICAL)
        # A silent timer is a broken renewal: no datapoint for a period counts as breaching.
        assert alarm["treatMissingData"] == "breaching"
        # CloudWatch: period x evaluation periods may not exceed one day for a standard alarm.
        assert alarm["period"] * alarm["evaluationPeriods"] <= 86400
        assert alarm["alarmActions"] == [topic] == alarm["okActions"]


def test_dlm_description_keeps_to_the_characters_dlm_accepts() -> None:
    # DLM: PolicyDescription pattern [0-9A-Za-z _-]+, 0..500 (botocore data/dlm/2018-01-12/service-2.json);
    # Pulumi stack names may contain "." (e.g. "prod.eu-west-1").
    import botocore.session

    shape = botocore.session.get_session().get_service_model("dlm").shape_for("PolicyDescription")
    pattern = re.compile(shape.metadata["pattern"])
    config, secret = load_stack_file("Pulumi.prod-sentinel.yaml")
    dotted = run_program(config, stack="prod.eu-west-1", secret_keys=secret)
    for run in (prod_sentinel(), dotted):
        description = run.one("aws:dlm/lifecyclePolicy:LifecyclePolicy").inputs["description"]
        assert pattern.fullmatch(description) and len(description) <= shape.metadata["max"], description
    assert dlm_description("redisstack prod.eu-west-1 redis") == "redisstack prod-eu-west-1 redis"
    assert dlm_description("a.b:c/d") == "a-b-c-d"


def run_in_partition(monkeypatch: pytest.MonkeyPatch, partition: str, dns_suffix: str) -> StackRun:
    """The prod-sentinel stack with mocks answering aws.get_partition with `partition`."""
    answer = RecordingMocks.call

    def in_partition(self: RecordingMocks, args: Any) -> Any:
        if args.token == "aws:index/getPartition:getPartition":
            self.invokes.append((args.token, dict(args.args)))
            return {"partition": partition, "dnsSuffix": dns_suffix, "id": partition}, []
        return answer(self, args)

    monkeypatch.setattr(RecordingMocks, "call", in_partition)
    config, secret = load_stack_file("Pulumi.prod-sentinel.yaml")
    return run_program(config, stack="prod-sentinel", secret_keys=secret)


def test_arns_follow_the_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_in_partition(monkeypatch, "aws-us-gov", "amazonaws.com")
    policy = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "redis-host-policy").inputs["policy"])
    read = next(s for s in policy["Statement"] if s["Sid"] == "ReadOwnParameters")
    assert read["Resource"].startswith("arn:aws-us-gov:ssm:eu-west-1:")
    dlm = next(r for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r.name == "redis-dlm-policy")
    assert dlm.inputs["policyArn"] == "arn:aws-us-gov:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
    recover = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "redis-node-0-system-check").inputs["alarmActions"]
    assert "arn:aws-us-gov:automate:eu-west-1:ec2:recover" in recover


def test_service_names_follow_the_partitions_dns_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    # aws-cn endpoints and regional service principals end in amazonaws.com.cn (botocore
    # data/endpoints.json, partitions[].dnsSuffix); kms:ViaService names the endpoint host.
    run = run_in_partition(monkeypatch, "aws-cn", "amazonaws.com.cn")
    host = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "redis-host-policy").inputs["policy"])
    via = {s["Sid"]: s["Condition"]["StringEquals"]["kms:ViaService"] for s in host["Statement"]
           if "kms:ViaService" in json.dumps(s)}
    assert via == {"DecryptThroughSsmOnly": "ssm.eu-west-1.amazonaws.com.cn",
                   "DecryptThroughSecretsManagerOnly": "secretsmanager.eu-west-1.amazonaws.com.cn"}
    smoke = next(r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if "smoke" in r.name)
    (decrypt,) = [s for s in json.loads(smoke.inputs["policy"])["Statement"] if s["Sid"] == "DecryptOwnSecrets"]
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == "secretsmanager.eu-west-1.amazonaws.com.cn"
    rotation = next(r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if "rotation" in r.name)
    (via,) = [s for s in json.loads(rotation.inputs["policy"])["Statement"]
              if s["Sid"] == "StackKeyThroughSecretsManagerOnly"]
    assert via["Condition"]["StringEquals"]["kms:ViaService"] == "secretsmanager.eu-west-1.amazonaws.com.cn"
    key_policy = json.loads(run.one("aws:kms/key:Key", "redis-kms").inputs["policy"])
    principals = {s["Principal"].get("Service") for s in key_policy["Statement"]}
    assert "logs.eu-west-1.amazonaws.com.cn" in principals and "logs.eu-west-1.amazonaws.com" not in principals
    for inst in run.of_type(T_INSTANCE):
        assert "https://s3.eu-west-1.amazonaws.com.cn/amazon-ssm-eu-west-1/" in script_of(inst)
    # A key ARN checked by `redisops key-policy` (no provider at hand): the suffix by its partition.
    assert KeyUse("123456789012", "aws-cn", "cn-north-1").logs_service == "logs.cn-north-1.amazonaws.com.cn"
    assert KeyUse("123456789012", "aws-us-gov", "us-gov-west-1").logs_service == "logs.us-gov-west-1.amazonaws.com"


def test_overridden_threshold_moves_the_alarm() -> None:
    config, secret = prod_variant(thresholds={"connected_clients": {"warn": 700, "crit": 900}})
    run = run_program(config, stack="prod", secret_keys=secret)
    alarms = {a.name: a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert alarms["redis-node-2-connected_clients-warning"].inputs["threshold"] == 700
    assert alarms["redis-node-2-connected_clients-critical"].inputs["threshold"] == 900


def test_components_and_children_follow_the_naming_rules() -> None:
    run = prod_sentinel()
    comp = run.one("redisstack:sentinel:SentinelHosts")
    assert comp.name == "redis"
    for r in run.resources:
        if r is comp:
            continue
        assert r.name.startswith("redis-"), r.name
        assert r.parent_type == "redisstack:sentinel:SentinelHosts", (r.type, r.name)


def _settings(**overrides: Any) -> Any:
    config, secret = prod_variant(**overrides)
    return parse_settings({k: v for k, v in config.items() if ":" not in k}, secret_keys=frozenset(secret),
                          stack="prod")


def test_settings_refuse_a_quorum_other_than_two() -> None:
    with pytest.raises(SettingsErrors) as exc:
        _settings(sentinel={"quorum": 3})
    [err] = [e for e in exc.value.errors if e.key == "sentinel.quorum"]
    assert err.value == 3 and "blocks failover" in err.allowed


def test_settings_refuse_fewer_than_three_subnets() -> None:
    net = {"vpcId": "vpc-0a1b2c3d4e5f60718", "appSecurityGroupIds": [APP_SG],
           "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]}
    with pytest.raises(SettingsErrors) as exc:
        _settings(network=net)
    assert any(e.key == "network.subnetIds" for e in exc.value.errors)


def test_args_refuse_failover_timeout_below_down_after() -> None:
    with pytest.raises(SettingError) as exc:
        SentinelHostsArgs.from_settings(_settings(sentinel={"downAfterMs": 9000, "failoverTimeoutMs": 5000}))
    assert exc.value.key == "sentinel.failoverTimeoutMs" and exc.value.value == 5000
    assert "sentinel.downAfterMs (9000)" in exc.value.allowed


def test_user_data_loads_the_functions_library_as_admin_and_fits_ec2s_limit() -> None:
    from infra.components.sentinel_hosts import LIBRARY_DELIMITER, USER_DATA_MAX_BYTES
    from ratelimit import function_library

    run = prod_sentinel()
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        # EC2 counts the raw bytes before base64: the gzip stream (~8.5 KB of a ~26 KB script).
        # A margin of a quarter (4 KB compressed, ~12 KB of script at this ratio), so the next
        # feature meets this test, not a failed launch.
        raw = raw_size(inst.inputs["userDataBase64"])
        assert raw <= USER_DATA_MAX_BYTES, raw
        assert raw <= USER_DATA_MAX_BYTES * 3 // 4, f"{raw} bytes: less than a quarter of EC2's limit left"
        assert len(ud.encode()) > USER_DATA_MAX_BYTES, "the script alone is over the limit: gzip is what fits it"
        # After redis-server starts, as the admin user, on the primary only; the exact library text.
        assert ud.index("FUNCTION LOAD REPLACE") > ud.index("systemctl enable --now redis-server")
        # Last in the boot, after the TLS renewal timer is installed, and never fatal: a Redis
        # LOADING a large dataset is waited for, a failure is logged and published (run:
        # tests/integration/test_user_data_functions_load.py).
        assert ud.index("systemctl enable --now redisstack-tls-renew.timer") < ud.index("load_library() {")
        assert "if load_library; then" in ud and "deadline=$((SECONDS + 1800))" in ud
        assert '--metric-name LibraryLoadFailed --dimensions "node=$NODE" --value 1 || true' in ud
        assert "--user admin" in ud and '[ "$(rcli ROLE | head -n 1)" = "master" ]' in ud
        heredoc = f"cat > /etc/redis/ratelimit.lua <<'{LIBRARY_DELIMITER}'\n"
        text = ud.split(heredoc, 1)[1].split(f"\n{LIBRARY_DELIMITER}\n", 1)[0]
        assert text + "\n" == function_library().rstrip("\n") + "\n"
        assert "--tls --cacert /etc/redis/tls/ca.crt" in ud


def test_user_data_over_ec2s_limit_even_compressed_is_refused_naming_the_node() -> None:
    import os

    from infra.components.sentinel_hosts import USER_DATA_MAX_BYTES, packed_user_data

    script = "#!/bin/bash\n" + os.urandom(USER_DATA_MAX_BYTES).hex()  # random hex: gzip halves it, no more
    with pytest.raises(ValueError, match=r"user data of node-1: \d+ bytes gzip-compressed .* at most 16384"):
        packed_user_data(script, "node-1")
    assert unpack(packed_user_data("#!/bin/bash\ntrue\n", "node-0")) == "#!/bin/bash\ntrue\n"


def test_user_data_checks_the_debian_package_floors_before_any_secret_or_unit() -> None:
    # The hosts install Debian's redis at boot: below its floor (infra/versions.py DEBIAN_FLOORS)
    # the boot stops before a secret is fetched or a unit started (run: tests/unit/test_package_floors.py).
    run = prod_sentinel()
    topic = run.one("aws:sns/topic:Topic").outputs["arn"]
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        node = inst.inputs["tags"]["redisstack-node"]
        assert f"NODE={node}\n" in ud
        for f in V.debian_floors("bookworm"):
            assert f"{f.package}={f.floor}" in ud
        call = ud.index(check_call())
        assert ud.index("apt-get install -y -q redis-server") < call < ud.index("\nfetch redis.conf ")
        assert call < ud.index("systemctl enable --now redis-server")
        alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", f"redis-{node}-boot-refused").inputs
        assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == (
            "redisstack/redisstack/prod-sentinel", BOOT_REFUSED_METRIC, {"node": node})
        assert (alarm["comparisonOperator"], alarm["threshold"], alarm["treatMissingData"]) == (
            "GreaterThanThreshold", 0, "ignore")
        assert alarm["alarmActions"] == [topic]



def test_account_wide_names_carry_the_project_so_two_projects_stacks_never_collide() -> None:
    # Parameters, the metrics log group, the alarm topic and the secrets are unique per account and
    # region: a second project deploying a stack of the same name gets its own.
    from redisops.mockrun import run_program as run_with_project

    config, secret = load_stack_file("Pulumi.prod-sentinel.yaml")
    spelled = {(k if ":" in k else f"redisstack:{k}"): v for k, v in config.items()}
    run = without_component(run_with_project(spelled, stack="prod-sentinel", project="team-b",
                                             secret_keys=tuple(f"redisstack:{k}" for k in secret)), SMOKE_FUNCTION)
    assert {p.inputs["name"].split("/")[1] for p in run.of_type(T_PARAM)} == {"team-b"}
    assert run.one("aws:cloudwatch/logGroup:LogGroup", "redis-metrics").inputs["name"] == \
        "/team-b/prod-sentinel/redis/metrics"
    assert run.one("aws:sns/topic:Topic").inputs["name"] == "team-b-prod-sentinel-redis-alarms"
    prefixes = {s.inputs["namePrefix"] for s in run.of_type("aws:secretsmanager/secret:Secret")}
    assert prefixes == {"team-b/prod-sentinel/redis/app-", "team-b/prod-sentinel/redis/admin-"}
    # The default project keeps the names every committed render and IAM policy names.
    assert prod_sentinel().one("aws:sns/topic:Topic").inputs["name"] == "redisstack-prod-sentinel-redis-alarms"


def _namespaces_used(run: StackRun) -> set[str]:
    """Every CloudWatch namespace the stack's hosts publish to or its alarms and IAM policy read."""
    found: set[str] = set()
    for alarm in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        found.add(alarm.inputs.get("namespace", ""))
        found.update(q["metric"]["namespace"] for q in alarm.inputs.get("metricQueries", []) if "metric" in q)
    for inst in run.of_type(T_INSTANCE):
        ud = script_of(inst)
        # Literal namespaces only: the renewal script reads "$NAMESPACE" from its env file (NAMESPACE=...).
        found.update(re.findall(r"--namespace ([^\s\"$]\S*)", ud))
        found.update(re.findall(r'"metric_namespace": "([^"]+)"', ud))
        found.update(re.findall(r"^NAMESPACE=(\S+)$", ud, re.M))
    for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
        for st in json.loads(policy.inputs["policy"])["Statement"]:
            found.update([st.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace", "")])
    return found - {"", "AWS/EC2"}


def test_two_sentinel_stacks_in_one_account_never_share_host_metrics() -> None:
    # Alarms select datapoints by namespace + dimensions only: two stacks publishing BootRefused,
    # LibraryLoadFailed, TlsCertificateDaysLeft or the exporter's EMF metrics as node=node-0 into one
    # namespace read each other's data (an alarm of one stack fired or cleared by the other's hosts).
    # The namespace is the stack's own, and PutMetricData's IAM scope (cloudwatch:namespace,
    # Service Authorization Reference for CloudWatch) keeps each stack's hosts out of the other's.
    config, secret = load_stack_file("Pulumi.prod-sentinel.yaml")
    runs = {"prod-sentinel": prod_sentinel(), "staging-sentinel": without_component(
        run_program(config, stack="staging-sentinel", secret_keys=secret), *LAMBDA_COMPONENTS)}
    used = {stack: _namespaces_used(run) for stack, run in runs.items()}
    assert used == {stack: {f"redisstack/redisstack/{stack}"} for stack in runs}
    for stack, run in runs.items():
        assert run.outputs["metricNamespace"] == f"redisstack/redisstack/{stack}"
        for inst in run.of_type(T_INSTANCE):  # every publisher in user data names it
            ud = script_of(inst)
            assert ud.count(f"--namespace redisstack/redisstack/{stack}") >= 2  # BootRefused 0/1 + LibraryLoadFailed
            assert f'"metric_namespace": "redisstack/redisstack/{stack}"' in ud


@pytest.mark.parametrize("stack", ["bad$stack", "x" * 250])
def test_a_stack_name_cloudwatch_cannot_take_as_a_namespace_is_refused(stack: str) -> None:
    from infra.components.sentinel_hosts import metric_namespace

    with pytest.raises(SettingError, match="metric namespace"):
        metric_namespace("redisstack", stack)
