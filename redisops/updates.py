"""Pending ElastiCache service updates of one replication group (`redisops updates`).

ElastiCache ships engine patches, security fixes included, as *service updates* that each
replication group applies itself (console, `batch-apply-update-action`, or automatically after
the recommended apply-by date for some). `DescribeUpdateActions` lists them per group
(docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_DescribeUpdateActions.html).

Security updates come first, then by severity and apply-by date. A security update still
pending after its recommended apply-by date fails the command: the deploy/drift workflow
turns that into a red run instead of a silent gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redisops.errors import UsageError

# UpdateActionStatus values that still need an action (the others: complete, not-applicable).
PENDING_STATUSES = ("not-applied", "waiting-to-start", "in-progress", "stopping", "stopped", "scheduling",
                    "scheduled")
SEVERITY_ORDER = {"critical": 0, "important": 1, "medium": 2, "low": 3}
SECURITY = "security-update"


@dataclass(frozen=True)
class UpdateAction:
    service_update: str
    type: str
    severity: str
    status: str
    release_date: str | None
    apply_by: str | None
    sla_met: str | None
    nodes_updated: str | None
    past_due: bool

    @property
    def security(self) -> bool:
        return self.type == SECURITY


def _iso(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    return str(value) if value else None


def _action(raw: dict[str, Any], now: dt.datetime) -> UpdateAction:
    apply_by = raw.get("ServiceUpdateRecommendedApplyByDate")
    due = isinstance(apply_by, dt.datetime) and apply_by.astimezone(dt.UTC) < now
    kind = str(raw.get("ServiceUpdateType") or "")
    return UpdateAction(
        service_update=str(raw.get("ServiceUpdateName", "?")),
        type=kind or "unspecified",
        severity=str(raw.get("ServiceUpdateSeverity") or "unspecified"),
        status=str(raw.get("UpdateActionStatus", "?")),
        release_date=_iso(raw.get("ServiceUpdateReleaseDate")),
        apply_by=_iso(apply_by),
        sla_met=raw.get("SlaMet"),
        nodes_updated=raw.get("NodesUpdated"),
        past_due=bool(due and kind == SECURITY),
    )


def _sort_key(a: UpdateAction) -> tuple[int, int, str, str]:
    return (0 if a.security else 1, SEVERITY_ORDER.get(a.severity, len(SEVERITY_ORDER)),
            a.apply_by or "9999", a.service_update)


def pending_updates(client: Any, replication_group_id: str, *, now: dt.datetime | None = None
                    ) -> list[UpdateAction]:
    """Every available service update not yet applied to the group, security first."""
    if not replication_group_id:
        raise UsageError("--replication-group-id is required; expected the ElastiCache replication group id")
    now = now or dt.datetime.now(dt.UTC)
    paginator = client.get_paginator("describe_update_actions")
    pages: Iterable[dict[str, Any]] = paginator.paginate(
        ReplicationGroupIds=[replication_group_id], ServiceUpdateStatus=["available"],
        UpdateActionStatus=list(PENDING_STATUSES))
    actions = [_action(raw, now) for page in pages for raw in page.get("UpdateActions", [])
               if raw.get("ReplicationGroupId") in (None, replication_group_id)]
    return sorted(actions, key=_sort_key)


def past_due(actions: Iterable[UpdateAction]) -> list[UpdateAction]:
    return [a for a in actions if a.past_due]
