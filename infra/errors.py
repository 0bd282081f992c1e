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
    """Every problem found in one pass, so a user fixes them all at once."""

    def __init__(self, errors: list[SettingError]) -> None:
        self.errors = errors
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {e}" for e in errors))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "(unset)"
    return repr(value)
