"""A committed stack render as a Terraform plan JSON, for scanners that read plans (checkov).

    render_to_plan(render: Mapping) -> dict        # docs/stacks/<stack>.yaml, parsed
    load_render(path) -> dict                      # reads and parses a committed render
    resource_type("aws:ec2/instance:Instance") == "aws_instance"

The render (`redisops render`, committed as docs/stacks/<stack>.yaml) lists every resource the
Pulumi program declares with its inputs. The plan is the shape Terraform's `terraform show -json`
writes (https://developer.hashicorp.com/terraform/internals/json-format), reduced to what
checkov's `terraform_plan` parser reads (bridgecrewio/checkov checkov/terraform/plan_parser.py:
`parse_tf_plan`, `_prepare_resource_block`, `_hclify`, `_add_references`; read at upstream commit
02dda9e55b99 and in the pinned 3.3.30 wheel, requirements-checkov.txt):

- `planned_values.root_module.resources[]`: `address`, `mode: managed`, `type`, `name`, `values`.
  Types are the Terraform provider's (`aws_elasticache_replication_group`), inputs snake_case,
  nested blocks as lists of objects (maps such as `tags` stay objects), JSON documents (IAM and
  key policies) as JSON strings, as the provider stores them.
- `configuration.root_module.resources[].expressions`: for an input whose value is the id, ARN
  or name of another resource the render declares, `{"references": ["aws_x.n.id", "aws_x.n"]}`,
  as Terraform writes a reference, and the value itself is left out of `values`, as an attribute
  known only after apply is. checkov's `_add_references` then puts the reference in the
  attribute, and its graph connects the two resources; that is how attachment checks
  (CKV2_AWS_5, security group attached) see that a group is used.

A value is a reference only when Pulumi recorded the dependency (the render's `dependsOn`, which
holds every resource whose output flowed into an input) and the value equals that resource's
id, ARN or name as the offline mocks compute it (redisops.mockrun). Values inside a longer
string (an ARN inside a policy document, an id inside user data) stay as they are: Terraform
would show the whole document unknown, and checkov would then have nothing to check in it.

Resources of the project's own component types (`redisstack:*`) hold no inputs and have no
Terraform counterpart; they are left out. A type token whose Terraform name cannot be derived
by the rules below raises `PlanError` naming it, so a new resource type gets a deliberate entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from infra import user_data
from redisops import mockrun

TERRAFORM_VERSION = "1.9.8"
FORMAT_VERSION = "1.2"
# Terraform registry sources of the providers the renders use.
PROVIDERS: Mapping[str, str] = {
    "aws": "registry.terraform.io/hashicorp/aws",
    "random": "registry.terraform.io/hashicorp/random",
    "tls": "registry.terraform.io/hashicorp/tls",
    "docker": "registry.terraform.io/kreuzwerker/docker",
}
# Tokens whose Terraform name is not `<provider>_<module>_<resource>`. pulumi-aws puts the EC2
# resources that Terraform names without a prefix (aws_instance, aws_security_group,
# aws_network_interface, aws_launch_template, aws_volume_attachment) into its ec2 module
# (pulumi/pulumi-aws provider/resources.go, ec2Mod) next to ones that keep it (aws_ec2_fleet is
# aws:ec2/fleet:Fleet), so ec2 tokens are listed here, never guessed.
TYPE_OVERRIDES: Mapping[str, str] = {
    "aws:ec2/instance:Instance": "aws_instance",
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/networkInterface:NetworkInterface": "aws_network_interface",
    "aws:ec2/launchTemplate:LaunchTemplate": "aws_launch_template",
    "aws:ec2/volumeAttachment:VolumeAttachment": "aws_volume_attachment",
    "aws:ec2/eip:Eip": "aws_eip",
    "aws:ec2/subnet:Subnet": "aws_subnet",
    "aws:ec2/vpc:Vpc": "aws_vpc",
    # BucketObjectv2 is Terraform's aws_s3_object (its pulumi-aws 7.51 docs repeat the
    # provider's "Provides an S3 object resource."); the derived name would be aws_s3_bucket_objectv2.
    "aws:s3/bucketObjectv2:BucketObjectv2": "aws_s3_object",
    # BucketReplicationConfig is Terraform's aws_s3_bucket_replication_configuration (pulumi-aws
    # 7.51 docs: "Provides an independent configuration resource for S3 bucket replication
    # configuration"; terraform-provider-aws internal/service/s3/bucket_replication_configuration.go
    # registers "aws_s3_bucket_replication_configuration").
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": "aws_s3_bucket_replication_configuration",
    # pulumi-docker's RemoteImage is the provider's docker_image.
    "docker:index/remoteImage:RemoteImage": "docker_image",
}
# Pulumi input names that differ from the Terraform attribute, per Terraform type. Pulumi names
# a list block in the plural where Terraform's block name is singular, and renames a few
# attributes (the pulumi-aws schema, e.g. TopicSubscription.topic "ARN of the SNS topic",
# Terraform's topic_arn).
RENAMES: Mapping[str, Mapping[str, str]] = {
    "aws_elasticache_replication_group": {"logDeliveryConfigurations": "log_delivery_configuration"},
    "aws_elasticache_parameter_group": {"parameters": "parameter"},
    "aws_cloudwatch_metric_alarm": {"metricQueries": "metric_query"},
    "aws_dlm_lifecycle_policy": {"schedules": "schedule"},
    "aws_s3_bucket_lifecycle_configuration": {"rules": "rule"},
    "aws_s3_bucket_server_side_encryption_configuration": {"rules": "rule"},
    "aws_s3_bucket_replication_configuration": {"rules": "rule"},
    "aws_sns_topic_subscription": {"topic": "topic_arn"},
    "docker_container": {"uploads": "upload"},
}
# Attributes of map type (string keys chosen by the user): objects in the plan. Every other
# object-valued input is a nested block, which the plan shows as a list of objects.
MAP_ATTRIBUTES = frozenset({"tags", "tags_all", "dimensions", "variables", "tags_to_add", "target_tags",
                            "options", "keepers"})
# Output attributes of a resource that another resource's input can name it by.
IDENTITY_OUTPUTS = ("id", "arn", "name", "keyId")
JSON_MARKER = "(json)"  # how a YAML render shows an inline JSON document (redisops.render)
ASSET_KINDS = frozenset({"AssetArchive", "FileArchive", "RemoteArchive", "FileAsset", "StringAsset", "RemoteAsset"})
SECRET = "[secret]"


class PlanError(ValueError):
    """A render that cannot be converted (unknown type token, clashing names)."""


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def resource_type(token: str) -> str:
    """Terraform type of a Pulumi type token (`pkg:module/member:Type`)."""
    if token in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[token]
    try:
        package, module_member, _ = token.split(":")
        module, member = module_member.split("/")
    except ValueError:
        raise PlanError(f"type token {token!r} is not of the form <package>:<module>/<member>:<Type>") from None
    if package not in PROVIDERS:
        raise PlanError(f"type token {token!r}: package {package!r} has no Terraform provider here; "
                        f"allowed: {', '.join(PROVIDERS)}")
    if package == "aws" and module == "ec2":
        raise PlanError(f"type token {token!r}: ec2 resources need an explicit Terraform name in "
                        "redisops.tfplan.TYPE_OVERRIDES (aws_instance, not aws_ec2_instance)")
    resource = _snake(member)
    if module == "index":
        return resource if resource.startswith(f"{package}_") else f"{package}_{resource}"
    return f"{package}_{_snake(module)}_{resource}"


def resource_name(name: str) -> str:
    """A Terraform resource name for a Pulumi logical name (letters, digits, underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _ref_key(entry: Mapping[str, Any]) -> str:
    return f"{entry['type']}::{entry['name']}"


class _Converter:
    def __init__(self, resources: Sequence[Mapping[str, Any]]) -> None:
        self.address: dict[str, str] = {}
        self.identities: dict[str, dict[str, str]] = {}  # ref key -> {value: attribute}
        seen: dict[str, str] = {}
        for entry in resources:
            if not self.converts(entry):
                continue
            tf_type = resource_type(entry["type"])
            address = f"{tf_type}.{resource_name(entry['name'])}"
            if address in seen:
                raise PlanError(f"resources {seen[address]!r} and {_ref_key(entry)!r} both become {address}")
            seen[address] = _ref_key(entry)
            self.address[_ref_key(entry)] = address
            self.identities[_ref_key(entry)] = _identities(entry)

    @staticmethod
    def converts(entry: Mapping[str, Any]) -> bool:
        return str(entry["type"]).split(":")[0] in PROVIDERS

    def resource(self, entry: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(planned value, configuration entry) of one render resource."""
        key = _ref_key(entry)
        address = self.address[key]
        tf_type, name = address.split(".", 1)
        deps = {d: self.identities[d] for d in (entry.get("options") or {}).get("dependsOn", [])
                if d in self.identities}
        values, expressions = self._object(tf_type, dict(entry.get("inputs") or {}), deps)
        common = {"address": address, "mode": "managed", "type": tf_type, "name": name}
        planned = {**common, "provider_name": PROVIDERS[entry["type"].split(":")[0]], "schema_version": 0,
                   "values": values, "sensitive_values": {}}
        config = {**common, "provider_config_key": entry["type"].split(":")[0], "schema_version": 0,
                  "expressions": expressions}
        return planned, config

    def _object(self, tf_type: str, inputs: Mapping[str, Any],
                deps: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
        values: dict[str, Any] = {}
        expressions: dict[str, Any] = {}
        renames = RENAMES.get(tf_type, {})  # at any depth: DLM's schedules sit inside policy_details
        for key, value in inputs.items():
            attr = renames.get(key) or _snake(key)
            if isinstance(value, Mapping) and JSON_MARKER in value:
                values[attr] = json.dumps(value[JSON_MARKER], sort_keys=True)
            elif isinstance(value, Mapping) and set(value) == {user_data.RENDER_KEY}:
                # The render shows user_data_base64 decoded (redisops.render); the plan holds it as sent.
                values[attr] = user_data.pack(str(value[user_data.RENDER_KEY]))
            elif isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ASSET_KINDS:
                # A Pulumi asset/archive (redisops.render prints its kind and entries): Terraform
                # has a file name here, a string.
                kind, content = next(iter(value.items()))
                values[attr] = f"{kind}:{','.join(content) if isinstance(content, list) else content}"
            elif isinstance(value, Mapping) and attr in MAP_ATTRIBUTES:
                values[attr] = dict(value)
            elif isinstance(value, Mapping):
                inner_values, inner_exprs = self._object(tf_type, value, deps)
                values[attr] = [inner_values]
                if inner_exprs:
                    expressions[attr] = [inner_exprs]
            elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
                blocks = [self._object(tf_type, v, deps) for v in value]
                values[attr] = [b[0] for b in blocks]
                if any(b[1] for b in blocks):
                    expressions[attr] = [b[1] for b in blocks]
            elif isinstance(value, list):
                refs = [self._reference(v, deps) for v in value]
                if any(refs):
                    # Known elements stay; referenced ones are unknown until apply (null).
                    values[attr] = [None if r else v for v, r in zip(value, refs, strict=True)]
                    expressions[attr] = {"references": [x for r in refs if r for x in r]}
                else:
                    values[attr] = list(value)
            else:
                ref = self._reference(value, deps)
                if ref:
                    expressions[attr] = {"references": ref}
                else:
                    values[attr] = value
        return values, expressions

    def _reference(self, value: Any, deps: Mapping[str, Mapping[str, str]]) -> list[str] | None:
        if not isinstance(value, str):
            return None
        for dep, identities in deps.items():
            if value in identities:
                address = self.address[dep]
                return [f"{address}.{identities[value]}", address]
        return None


def _identities(entry: Mapping[str, Any]) -> dict[str, str]:
    """{value: attribute} of the id, ARN and name the offline mocks give this resource."""
    type_ = str(entry["type"])
    if not type_.startswith("aws:"):
        return {}
    outputs = mockrun.aws_identity(type_, str(entry["name"]), dict(entry.get("inputs") or {}))
    found: dict[str, str] = {}
    for output in IDENTITY_OUTPUTS:
        value = outputs.get(output)
        if isinstance(value, str) and value and value != SECRET:
            found.setdefault(value, _snake(output))
    return found


def render_to_plan(render: Mapping[str, Any]) -> dict[str, Any]:
    """The Terraform plan JSON (as a dict) of a parsed render (see the module docstring)."""
    resources = render.get("resources")
    if not isinstance(resources, list):
        raise PlanError("render has no 'resources' list; expected a parsed docs/stacks/<stack>.yaml")
    converter = _Converter(resources)
    planned: list[dict[str, Any]] = []
    config: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for entry in resources:
        if not converter.converts(entry):
            continue
        value, conf = converter.resource(entry)
        planned.append(value)
        config.append(conf)
        changes.append({k: value[k] for k in ("address", "mode", "type", "name", "provider_name")}
                       | {"change": {"actions": ["create"], "before": None, "after": value["values"],
                                     "after_unknown": _unknown(conf["expressions"])}})
    providers = sorted({c["provider_config_key"] for c in config})
    return {
        "format_version": FORMAT_VERSION,
        "terraform_version": TERRAFORM_VERSION,
        "variables": {},
        "planned_values": {"root_module": {"resources": planned}},
        "resource_changes": changes,
        "configuration": {
            "provider_config": {p: {"name": p, "full_name": PROVIDERS[p]} for p in providers},
            "root_module": {"resources": config},
        },
        # Not part of Terraform's format: where this plan came from, for a reader of the file.
        "redisstack_render": {"project": render.get("project"), "stack": render.get("stack")},
    }


def _unknown(expressions: Mapping[str, Any]) -> dict[str, Any]:
    """`after_unknown` for the referenced attributes: true where a whole value is a reference."""
    unknown: dict[str, Any] = {}
    for key, expr in expressions.items():
        if isinstance(expr, Mapping) and "references" in expr:
            unknown[key] = True
        elif isinstance(expr, list):
            unknown[key] = [_unknown(e) for e in expr]
    return unknown


def load_render(path: str | Path) -> dict[str, Any]:
    text = Path(path).read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not a stack render (expected a YAML mapping with 'resources')")
    return data


def write_plan(render_path: str | Path, out: str | Path) -> Path:
    out = Path(out)
    out.write_text(json.dumps(render_to_plan(load_render(render_path)), indent=1, sort_keys=False) + "\n")
    return out
