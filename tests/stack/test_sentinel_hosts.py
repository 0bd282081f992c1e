"""Stack tests (mocks) for the `sentinel` target: three EC2 hosts running redis + Sentinel.

The config is the committed Pulumi.prod-sentinel.yaml and a variant of Pulumi.prod.yaml with
`target: sentinel`; every security-relevant property is asserted on what the program declares.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from infra.components.sentinel_hosts import (
    CW_ROWS,
    EXPORTER_CA_FILE,
    HOST_FILES,
    SESSION_MANAGER_ACTIONS,
    TLS_HOST_FILES,
    SentinelHostsArgs,
    exporter_args,
    user_data,
)
from infra.errors import SettingError, SettingsErrors
from infra.settings import parse_settings
from infra.thresholds import DEFAULT_THRESHOLDS
from redis_conf.sentinel import MASTER_NAME
from redisops.mockrun import RecordingMocks
from tests.support.pulumi_harness import (
    StackRun,
    load_stack_file,
    run_program,
    unwrap_secret,
    without_component,
)

SMOKE_FUNCTION = "redisstack:aws:SmokeFunction"

APP_SG = "sg-0a1b2c3d4e5f60aa1"
T_INSTANCE = "aws:ec2/instance:Instance"
T_PARAM = "aws:ssm/parameter:Parameter"
T_IN = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
T_OUT = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
T_VOLUME = "aws:ebs/volume:Volume"
T_ATTACH = "aws:ec2/volumeAttachment:VolumeAttachment"
T_LT = "aws:ec2/launchTemplate:LaunchTemplate"


def prod_variant(**overrides: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Pulumi.prod.yaml switched to the sentinel target (it already lists 3 subnets)."""
    config, secret = load_stack_file("Pulumi.prod.yaml")
    config = {**config, "target": "sentinel", "engineVersion": "7.0", **overrides}
    return config, secret


@cache
def prod_sentinel() -> StackRun:
    config, secret = load_stack_file("Pulumi.prod-sentinel.yaml")
    # The smoke function (on the hosts' group too) has its own tests: tests/stack/test_smoke_function.py.
    return without_component(run_program(config, stack="prod-sentinel", secret_keys=secret), SMOKE_FUNCTION)


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
    key_arn = run.one("aws:kms/key:Key").outputs["arn"]
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
        assert {"launchTemplate", "userData"} <= set(inst.ignore_changes)
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
        ud = inst.inputs["userData"]
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
                   data_volume_id="vol-0123456789abcdef0")
    assert "fetch tls/" not in ud and "-tls-ca-cert-file" not in ud
    assert "DATA_VOLUME=vol-0123456789abcdef0\n" in ud


def test_no_secret_in_user_data() -> None:
    run = prod_sentinel()
    secrets = secrets_of(run)
    for inst in run.of_type(T_INSTANCE):
        ud = inst.inputs["userData"]
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
    key_arn = run.one("aws:kms/key:Key").outputs["arn"]
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
    assert set(by_sid) == {"ReadOwnParameters", "DecryptThroughSsmOnly", "PublishMetricsAsEmf", "SessionManagerOnly"}
    assert by_sid["ReadOwnParameters"]["Action"] == ["ssm:GetParameter"]
    assert by_sid["ReadOwnParameters"]["Resource"].endswith(f"parameter{run.outputs['parameterPrefix']}/*")
    dec = by_sid["DecryptThroughSsmOnly"]
    assert dec["Resource"] == run.one("aws:kms/key:Key").outputs["arn"]
    assert dec["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}}
    assert all("*" not in a for s in policy["Statement"] for a in s["Action"])
    # Session Manager without AmazonSSMManagedInstanceCore (ssm:GetParameter(s) on *): no other
    # statement reaches SSM parameters, no managed policy is attached to the host role.
    ssm = by_sid["SessionManagerOnly"]
    assert sorted(ssm["Action"]) == sorted(SESSION_MANAGER_ACTIONS)
    assert not any(a.startswith("ssm:GetParameter") for a in ssm["Action"])
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


def test_key_policy_lets_cloudwatch_logs_use_the_key_for_the_metrics_log_group() -> None:
    run = prod_sentinel()
    key = run.one("aws:kms/key:Key")
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["kmsKeyId"] == key.outputs["arn"]
    policy = json.loads(key.inputs["policy"])
    [logs] = [s for s in policy["Statement"] if s["Principal"].get("Service") == "logs.eu-west-1.amazonaws.com"]
    assert set(logs["Action"]) == {"kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                                   "kms:Describe*"}
    assert logs["Condition"] == {"ArnLike": {
        "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:eu-west-1:123456789012:log-group:*"}}


def test_arns_follow_the_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = RecordingMocks.call

    def gov_cloud(self: RecordingMocks, args: Any) -> Any:
        if args.token == "aws:index/getPartition:getPartition":
            self.invokes.append((args.token, dict(args.args)))
            return {"partition": "aws-us-gov", "dnsSuffix": "amazonaws.com", "id": "aws-us-gov"}, []
        return answer(self, args)

    monkeypatch.setattr(RecordingMocks, "call", gov_cloud)
    config, secret = load_stack_file("Pulumi.prod-sentinel.yaml")
    run = run_program(config, stack="prod-sentinel", secret_keys=secret)
    policy = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "redis-host-policy").inputs["policy"])
    read = next(s for s in policy["Statement"] if s["Sid"] == "ReadOwnParameters")
    assert read["Resource"].startswith("arn:aws-us-gov:ssm:eu-west-1:")
    dlm = next(r for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r.name == "redis-dlm-policy")
    assert dlm.inputs["policyArn"] == "arn:aws-us-gov:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
    recover = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "redis-node-0-system-check").inputs["alarmActions"]
    assert "arn:aws-us-gov:automate:eu-west-1:ec2:recover" in recover


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
