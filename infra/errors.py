"""The one error type for bad stack configuration."""

from __future__ import annotations

from typing import Any

NAMESPACE = "redisstack"


class SettingError(ValueError):
    """A config value that is not allowed: names the key, the value and what is allowed.

    `key` is the dotted path inside the project namespace (e.g. ``rateLimits.auth``);
    str() gives ``redisstack:rateLimits.auth = "30/60": expected ...``.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(self.render())

    def render(self) -> str:
        shown = "<secret>" if self.key.lower().endswith(("password", "authtoken", "token")) else _show(self.value)
        return f"{NAMESPACE}:{self.key} = {shown}: {self.allowed}"

    def within(self, prefix: str) -> SettingError:
        """The same error with its key nested under `prefix` (e.g. thresholds.<key>)."""
        return SettingError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.allowed)


class SettingsErrors(ValueError):
    """Every problem found in one pass, so a user fixes them all at once.

    A ValueError for Python callers; the Pulumi entry point (infra.program.main) ends the run with
    it as a `pulumi.RunError` and `redisops` prints it with exit code 2, both without a traceback.
    """

    def __init__(self, errors: list[SettingError]) -> None:
        self.errors = errors
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {e}" for e in errors))


def settings_errors_in(exc: BaseException) -> SettingsErrors | None:
    """The bad-config list behind `exc`, or None when `exc` is something else (a bug).

    A component's own check raises a lone SettingError (one item of the list). One raised inside an
    apply comes back wrapped: the Pulumi SDK raises a new ValueError while handling it
    (pulumi/runtime/rpc.py serialize_properties) and then re-raises that one from itself
    (runtime/stack.py wait_for_rpcs), so the original is only in the context chain, which is
    followed too (a chain can loop).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SettingsErrors):
            return current
        if isinstance(current, SettingError):
            return SettingsErrors([current])
        pending += [current.__cause__, current.__context__]
    return None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "(unset)"
    return repr(value)
