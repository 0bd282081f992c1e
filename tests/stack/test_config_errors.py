"""Bad stack config ends `pulumi up`/`pulumi preview` with the list alone; a bug keeps its traceback.

How Pulumi's Python language host treats what the program raises:

- The executor the Pulumi CLI runs, pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec
  (its `__main__` block, read at commit 1b5949891b3c): `except pulumi.RunError as e:
  pulumi.log.error(str(e))`, the message alone; `except Exception:` logs "Program failed with an
  unhandled exception:" followed by the traceback. A RunError leaves exit code 1, which the Go
  host (sdk/python/cmd/pulumi-language-python/main.go) turns into one more line, "program exited
  with non-zero exit code: 1". That script ships with the CLI, not in the pinned `pulumi` wheel,
  so it cannot run here.
- The pinned SDK's own language host (pulumi==3.272.0, pulumi/automation/_server.py,
  `LanguageServer.Run`, whose comment says it follows pulumi-language-python-exec): `except
  RunError` logs str(exn) and returns it as the RunResponse error; any other exception becomes
  "python inline source runtime error: ..." plus `traceback.format_exc()`. The tests below run
  the real entry point (infra/__main__.py, through runpy as both hosts do) inside that handler,
  with the engine's config in the RunRequest and the project's mocks as the resource monitor.
"""

from __future__ import annotations

import json
import logging
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.automation import _server
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockEngine, MockSettings
from pulumi.runtime.proto import language_pb2

from infra.errors import SettingError, SettingsErrors
from infra.settings import parse_settings
from tests.support.pulumi_harness import PROJECT, RealisticMocks, _RecordingMonitor, load_stack_file

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINT = REPO / "infra"  # Pulumi.yaml `main: infra/`


class _Engine(logging.Handler):
    """What the program logged to the engine (MockEngine forwards LogRequests to a logger)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]


def _run_in_sdk_host(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], secret_keys: tuple[str, ...] = (),
                     *, stack: str = "dev") -> tuple[Any, list[BaseException], RealisticMocks, _Engine]:
    """LanguageServer.Run on the real entry point; returns (RunResponse, what it raised, mocks, engine log)."""
    mocks = RealisticMocks()
    monitor = _RecordingMonitor(mocks)
    engine = _Engine()
    logger = logging.getLogger(f"{__name__}.engine")
    logger.addHandler(engine)
    logger.propagate = False

    def reset_options(*, project: str, stack: str, preview: bool, organization: str, **_: Any) -> None:
        # What the SDK's reset_options does (a fresh settings bag, no root stack yet), with the
        # mock monitor in place of a gRPC connection to the engine.
        features = set(monitor.GetDeploymentInfo(None).supportedFeatures)
        runtime_settings.configure(MockSettings(
            monitor=monitor, monitor_features=features, engine=MockEngine(logger), project=project, stack=stack,
            dry_run=preview, organization=organization, callbacks=None, parallel=None, root_directory=None))
        runtime_settings.ROOT.set(None)

    monkeypatch.setattr(_server, "reset_options", reset_options)
    raised: list[BaseException] = []

    def program() -> None:
        try:
            runpy.run_path(str(ENTRY_POINT), run_name="__main__")
        except BaseException as exc:
            raised.append(exc)
            raise

    request = language_pb2.RunRequest(
        project=PROJECT, stack=stack, dryRun=True, parallel=1,
        config={f"{PROJECT}:{k}" if ":" not in k else k: v if isinstance(v, str) else json.dumps(v)
                for k, v in config.items()},
        configSecretKeys=[f"{PROJECT}:{k}" for k in secret_keys])
    try:
        response = _server.LanguageServer(program).Run(request, None)
    finally:
        logger.removeHandler(engine)
    return response, raised, mocks, engine


def _expected(config: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> str:
    with pytest.raises(SettingsErrors) as info:
        parse_settings({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if ":" not in k},
                       secret_keys=frozenset(secret_keys))
    return str(info.value)


README_MISTAKES = {"target": "local", "rateLimits": {"auth": "30/60"}, "redis": {"maxmemory": "800xb"}}


def test_bad_settings_end_the_run_with_the_list_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    response, raised, mocks, engine = _run_in_sdk_host(monkeypatch, README_MISTAKES)
    expected = _expected(README_MISTAKES)
    assert expected.startswith("invalid stack configuration:\n  - ")
    # The program raised the SDK's clean-exit type, not SettingsErrors (which the host would print
    # with a traceback), and the host took its RunError path: the message is the whole error.
    assert [type(e) for e in raised] == [pulumi.RunError]
    assert response.error == expected
    assert engine.errors() == [expected]
    assert "Traceback" not in response.error
    assert mocks.resources == [], "nothing is declared when the settings are refused"


def test_a_component_check_ends_the_run_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # failoverTimeoutMs below downAfterMs passes the settings model and is refused by
    # SentinelHostsArgs.from_settings: a lone SettingError, shown as a one-item list.
    config, secrets = load_stack_file("Pulumi.prod-sentinel.yaml")
    config["sentinel"] = {**config["sentinel"], "downAfterMs": 9000, "failoverTimeoutMs": 5000}
    response, raised, mocks, _ = _run_in_sdk_host(monkeypatch, config, secrets, stack="prod-sentinel")
    assert [type(e) for e in raised] == [pulumi.RunError]
    assert response.error == str(SettingsErrors([SettingError(
        "sentinel.failoverTimeoutMs", 5000, "expected at least sentinel.downAfterMs (9000)")]))
    assert mocks.resources == []


def test_a_bug_still_reaches_the_host_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contrast that makes the tests above able to fail: anything but bad settings is not
    dressed up as a RunError, so the host's unhandled-exception path shows where it broke."""
    import infra.program

    def broken(_settings: Any) -> dict[str, Any]:
        raise KeyError("maxmemory-policy")

    monkeypatch.setattr(infra.program, "common_outputs", broken)
    config, secrets = load_stack_file("Pulumi.dev.yaml")
    response, raised, _, engine = _run_in_sdk_host(monkeypatch, config, secrets)
    assert [type(e) for e in raised] == [KeyError]
    assert response.error.startswith("python inline source runtime error: 'maxmemory-policy'")
    assert "Traceback (most recent call last)" in response.error and "in broken" in response.error
    assert engine.errors() == [response.error]
