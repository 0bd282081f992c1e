"""What the real Docker engine, the pinned images and the docker provider require of every local
container, in one place: LocalRedisStack, LocalSentinel and any later local topology build their
containers with these helpers, and tests/stack/test_docker_rules.py holds every render to them.

Network: one mechanism. A container joins the stack network through `networks_advanced` only
(with its aliases), never also through `network_mode`. The provider turns `network_mode` into
HostConfig.NetworkMode at create time and then NetworkConnect()s every `networks_advanced` entry
with its aliases (kreuzwerker/terraform-provider-docker v4.5.0,
internal/provider/resource_docker_container_funcs.go, resourceDockerContainerCreate); when both
name the same network the engine ignores the second attach and the aliases never reach its DNS.
Without `network_mode` the container is created on the default bridge, which the provider
disconnects before it connects the networks_advanced entries (same function).

Uploads: readable by the container's user whether or not the provider sets their owner. The
provider writes each upload as a tar entry and copies it with CopyToContainerOptions{} (no
CopyUIDGID); in upstream v4.5.0 the tar header carries only name, mode, size and mtime, so the
file arrives owned by root:root with the declared mode. pulumi-docker 5.2.0's SDK declares
`owner`/`group` on uploads, whose Go code is not among the sources read (docs/decisions.md,
"Upload ownership"). So every upload is group 0 with a group-readable mode, and a container that
reads a secret upload runs with supplementary group 0: readable when the owner is honoured (the
owner is the container's uid) and when it is not (group root). The grafana image itself runs
its user in group 0 (grafana/grafana Dockerfile: ARG GF_GID="0"), the pattern OpenShift documents
for images that must run under arbitrary uids ("support arbitrary user ids": root group, group
permissions).

Umask: the redis image's entrypoint sets `umask 0077` before it execs the server
(docker-library/redis 7.2/debian/docker-entrypoint.sh at REDIS_VERSION 7.2.5, "set an appropriate
umask"; see docker-library/redis#305), while a container process otherwise starts with umask
0022. A container that runs the server directly (without that entrypoint) wraps it in
`sh -c 'umask 0077 && exec "$0" "$@"'`, so RDB/AOF files come out 0600 and directories 0700.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_docker as docker

# Owner group of every upload: root, readable by the containers that need it (group_adds).
UPLOAD_GROUP = "0"
SECRET_MODE = "0440"
PUBLIC_MODE = "0444"
# As the redis image's entrypoint: a private umask only when the inherited one is the default.
PRIVATE_UMASK = "0077"
UMASK_WRAPPER = f'umask {PRIVATE_UMASK} && exec "$0" "$@"'
# Grafana migrates its database before it listens: tens of seconds on a first start. Failures
# inside the start period do not count; pulumi up waits (provider `wait` / `wait_timeout`) for
# the start period plus the retries that would make it unhealthy.
GRAFANA_START_PERIOD_S = 180
GRAFANA_WAIT_TIMEOUT_S = GRAFANA_START_PERIOD_S + 60


def attach(network_name: pulumi.Input[str], aliases: Sequence[str]) -> dict[str, Any]:
    """Container arguments that put it on `network_name` with `aliases` (and nothing else)."""
    return {"networks_advanced": [docker.ContainerNetworksAdvancedArgs(name=network_name, aliases=list(aliases))]}


def upload(path: str, content: pulumi.Input[str], owner: str, *, secret: bool) -> docker.ContainerUploadArgs:
    """A file readable by `owner` (the container's uid) and group 0, by nobody else."""
    return docker.ContainerUploadArgs(file=path, content=content, owner=owner, group=UPLOAD_GROUP,
                                      permissions=SECRET_MODE if secret else PUBLIC_MODE)


def hardening(*, reads_secret_uploads: bool) -> dict[str, Any]:
    """Non-root programs that cannot gain privileges; group 0 only where a secret upload is read."""
    args: dict[str, Any] = {
        "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
        "security_opts": ["no-new-privileges:true"],
    }
    if reads_secret_uploads:
        args["group_adds"] = [UPLOAD_GROUP]
    return args


def with_private_umask(argv: Sequence[str]) -> dict[str, Any]:
    """Entrypoint + command that run `argv` under umask 0077 (argv[0] becomes the shell's $0)."""
    return {"entrypoints": ["sh", "-c", UMASK_WRAPPER], "command": list(argv)}


def grafana_healthcheck(port: int) -> docker.ContainerHealthcheckArgs:
    """GET /api/health with curl, which the grafana image installs in both of its variants
    (grafana/grafana Dockerfile, final stage: `apk add ... curl` / `apt-get install ... curl`)."""
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", "curl", "--fail", "--silent", "--show-error", "--output", "/dev/null",
               f"http://127.0.0.1:{port}/api/health"],
        interval="5s", timeout="3s", retries=5, start_period=f"{GRAFANA_START_PERIOD_S}s")
