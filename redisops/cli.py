"""The `redisops` command line (also `python -m redisops`).

Exit codes: smoke 0 all checks passed / 1 a check failed; health 0 OK / 1 WARNING / 2 CRITICAL
(Nagios); every command 2 for missing or malformed input (the message names the variable or
flag and what is expected; bad stack settings print the whole list) and 70 (EX_SOFTWARE) for an
unexpected error, a bug: one summary line and a hint; `redisops --debug ...` adds the traceback.
Tables and progress go to the terminal; passwords never do.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from redisops import connection as rc
from redisops.errors import OperationError, UsageError
from redisops.report import LEVEL_EXIT, Report, render_table, summary_line, write_outputs

app = typer.Typer(name="redisops", help="Operate the rate-limiting Redis: smoke test, health, backup/restore, ...",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
dev_app = typer.Typer(help="The local dev stack (redis, redis_exporter, Prometheus, Grafana).", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
functions_app = typer.Typer(help="The `ratelimit` Redis Functions library the limiter calls (FCALL).",
                            no_args_is_help=True)
app.add_typer(functions_app, name="functions")

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
# sysexits.h EX_SOFTWARE: neither a failed check (1) nor bad input (2), so CI and Nagios tell a crash apart.
EXIT_BUG = 70
DEBUG_ENV = "REDISOPS_DEBUG"
_debug = {"on": False}
# `env` masks these on top of infra.envcontract.SECRET_VARIABLES (sentinel, admin, monitor passwords, ...).
SECRET_SUFFIXES = ("_PASSWORD", "_TOKEN", "_SECRET")


def _say(text: str) -> None:
    """Plain text (paths, server messages): never interpreted as rich markup, never wrapped."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)

StackOutputs = Annotated[Path | None, typer.Option(
    "--stack-outputs", help="JSON of `pulumi stack output --json --show-secrets` (its `env` output is used)",
    dir_okay=False)]
Stack = Annotated[str | None, typer.Option("--stack", help="Pulumi stack name (runs the Pulumi CLI)")]
Insecure = Annotated[bool, typer.Option("--insecure-skip-verify",
                                        help="Do not verify the server certificate (reported loudly)")]
Settings = Annotated[Path | None, typer.Option(
    "--settings", help="Pulumi.<stack>.yaml whose settings give tiers, expectations and thresholds", dir_okay=False)]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the report as JSON to this file", dir_okay=False)]


@app.callback()
def _global_options(debug: Annotated[bool, typer.Option(
        "--debug", envvar=DEBUG_ENV, help="Print the full Python traceback when a command fails unexpectedly")]
        = False) -> None:
    _debug["on"] = debug


def _exits(fn: F) -> F:
    """Map our errors to exit codes: UsageError 2, OperationError 1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OperationError as exc:
            err.print(f"[bold red]failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


def _bug_summary(exc: Exception) -> str:
    """`KeyError: 'x' at redisops/render.py:42 in render_stack`: what failed and where, one line."""
    message = (str(exc).strip().splitlines() or [""])[0][:200]
    summary = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        summary += f" at {'/'.join(Path(last.filename).parts[-2:])}:{last.lineno} in {last.name}"
    return summary


def _unexpected(exc: Exception) -> int:
    """Bad stack settings, however deep they were found: the list, exit 2. Anything else is a bug:
    the traceback only with --debug, then one line saying what failed and where, exit EXIT_BUG."""
    from infra.errors import settings_errors_in

    errors = settings_errors_in(exc)
    if errors is not None:
        err.print(f"[bold red]error:[/] {escape(str(errors))}", highlight=False, soft_wrap=True)
        return 2
    if _debug["on"]:
        traceback.print_exception(exc)
    err.print(f"[bold red]bug:[/] {escape(_bug_summary(exc))}", highlight=False, soft_wrap=True)
    if not _debug["on"]:
        err.print(f"hint: rerun with --debug (redisops --debug <command> ...) or {DEBUG_ENV}=1 for the full "
                  "traceback, and report it", highlight=False, soft_wrap=True)
    return EXIT_BUG


def _resolve(stack_outputs: Path | None, stack: str | None, insecure: bool, settings: Path | None = None,
             expectations: rc.Expectations | None = None) -> rc.ConnectionSpec:
    spec = rc.resolve(stack_outputs=stack_outputs, stack=stack, insecure_skip_verify=insecure,
                      settings_file=settings, flag_expectations=expectations)
    if insecure:
        err.print("[bold yellow on red] WARNING [/] --insecure-skip-verify: the server certificate is NOT verified; "
                  "a man in the middle would not be noticed")
    return spec


def _yes_no(flag: str, value: str | None) -> bool | None:
    if value is None:
        return None
    try:
        return rc.parse_bool(flag, value)
    except UsageError:
        raise UsageError(f"{flag} {value!r}: expected yes or no") from None


def _memory(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    from redis_conf.schema import Invalid, parse_memory

    try:
        return parse_memory(value)
    except Invalid as exc:
        raise UsageError(f"{flag} {value!r}: {exc}") from None


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _emit(report: Report, spec: rc.ConnectionSpec, json_path: Path | None, junit_path: Path | None = None) -> None:
    write_outputs(report, json_path=json_path, junit_path=junit_path, secrets=spec.secrets())
    render_table(report, out, spec.secrets())
    _say(summary_line(report))


@app.command()
@_exits
def smoke(
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    insecure_skip_verify: Insecure = False,
    settings: Settings = None,
    expect_policy: Annotated[str | None, typer.Option(help="Expected maxmemory-policy, e.g. allkeys-lru")] = None,
    expect_aof: Annotated[str | None, typer.Option(help="Expected AOF state: yes or no")] = None,
    expect_maxmemory: Annotated[str | None, typer.Option(help="Expected maxmemory, e.g. 800mb")] = None,
    json_path: JsonOut = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here", dir_okay=False)] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Concurrent limiter clients")] = 16,
) -> None:
    """Post-deploy smoke test: reachability, TLS, auth, ACL, persistence, the limiter per tier."""
    from redis_conf.schema import MAXMEMORY_POLICIES
    from redisops.smoke import SmokeOptions, SmokeRun

    if expect_policy is not None and expect_policy not in MAXMEMORY_POLICIES:
        raise UsageError(f"--expect-policy {expect_policy!r}: expected one of {', '.join(MAXMEMORY_POLICIES)}")
    flags = rc.Expectations(expect_policy, _yes_no("--expect-aof", expect_aof),
                            _memory("--expect-maxmemory", expect_maxmemory), source="flags")
    spec = _resolve(stack_outputs, stack, insecure_skip_verify, settings, flags)
    run = SmokeRun(spec, SmokeOptions(concurrency=concurrency))
    interrupted = False
    with _progress() as progress:
        task = progress.add_task("smoke", total=len(run.planned()))
        run._on_start = lambda name: progress.update(task, description=f"smoke: {name}")
        run._on_check = lambda _c: progress.advance(task)
        try:
            report = run.run()
        except KeyboardInterrupt:
            # run() already cleaned up in its finally; say so and fail.
            interrupted = True
            report = run.report
    _emit(report, spec, json_path, junit)
    if interrupted:
        err.print("[bold red]interrupted[/]: smoke keys were cleaned up (see the cleanup row)")
        raise typer.Exit(1)
    raise typer.Exit(0 if report.passed else 1)


def _threshold_overrides(values: list[str]) -> dict[str, dict[str, float | None]]:
    overrides: dict[str, dict[str, float | None]] = {}
    for item in values:
        name, sep, lines = item.partition("=")
        warn, sep2, crit = lines.partition(":")
        if not sep or not sep2 or not name:
            raise UsageError(f"--threshold {item!r}: expected NAME=WARN:CRIT, e.g. connected_clients=1000:5000 "
                             "(an empty side keeps the table's line, '-' removes it)")
        entry: dict[str, float | None] = {}
        for field, text in (("warn", warn), ("crit", crit)):
            if text == "":
                continue
            if text == "-":
                entry[field] = None
                continue
            try:
                entry[field] = float(text)
            except ValueError:
                raise UsageError(f"--threshold {item!r}: {field} {text!r} is not a number") from None
        overrides[name] = entry
    return overrides


@app.command()
@_exits
def health(
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    insecure_skip_verify: Insecure = False,
    settings: Settings = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="Override a line: NAME=WARN:CRIT (repeatable), e.g. memory_usage=75:85")] = None,
    sample_seconds: Annotated[float, typer.Option(min=0.1, max=60, help="Interval for rates")] = 1.0,
    prefix: Annotated[str, typer.Option(help="Limiter key prefix")] = "rl",
    scan_budget: Annotated[int, typer.Option(min=1, help="At most this many keys are scanned")] = 10_000,
    as_app: Annotated[bool, typer.Option("--as-app", help="Use the app user even when admin credentials are set")]
    = False,
    json_path: JsonOut = None,
) -> None:
    """Health check with Nagios exit codes (0 OK, 1 WARNING, 2 CRITICAL) against the thresholds table."""
    from infra.errors import SettingError, SettingsErrors
    from infra.thresholds import DEFAULT_THRESHOLDS, apply_overrides
    from redisops.health import HealthOptions, HealthRun

    base = DEFAULT_THRESHOLDS
    if settings is not None:
        _, _, base = rc.settings_expectations(settings)
    try:
        thresholds = apply_overrides(_threshold_overrides(threshold or []), base)
    except (SettingError, SettingsErrors) as exc:
        raise UsageError(f"--threshold: {exc}") from None
    spec = _resolve(stack_outputs, stack, insecure_skip_verify)
    run = HealthRun(spec, thresholds, HealthOptions(sample_seconds=sample_seconds, prefix=prefix,
                                                     scan_budget=scan_budget, use_admin=False if as_app else None))
    with _progress() as progress:
        task = progress.add_task("health", total=None)
        run.on_start = lambda name: progress.update(task, description=f"health: {name}")
        report = run.run()
    _emit(report, spec, json_path)
    raise typer.Exit(LEVEL_EXIT[report.level()])


def _progress_cb(progress: Progress, task: Any) -> Callable[[str, float | None], None]:
    def cb(message: str, fraction: float | None) -> None:
        progress.update(task, description=message, total=1.0 if fraction is not None else None,
                        completed=fraction or 0.0)
    return cb


@app.command()
@_exits
def backup(
    to: Annotated[Path, typer.Option("--to", help="Directory that holds the backups", file_okay=False)],
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    insecure_skip_verify: Insecure = False,
    data_dir: Annotated[Path | None, typer.Option(
        help="Redis data dir on this machine (default: CONFIG GET dir; for a container, the volume path)")] = None,
    keep: Annotated[int | None, typer.Option(help="Keep only the newest N backups")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the backups in --to and exit")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for BGSAVE")] = 300.0,
    json_path: JsonOut = None,
) -> None:
    """BGSAVE (admin user), copy RDB (+AOF) with a SHA-256 manifest, verify with redis-check-rdb/aof."""
    from redisops import backup as bk

    if list_:
        rows = bk.list_backups(to)
        if keep is not None:
            pruned = bk.prune(to, keep)
            for p in pruned:
                _say(f"deleted {p}")
            rows = bk.list_backups(to)
        _print_backups(rows, json_path)
        return
    spec = _resolve(stack_outputs, stack, insecure_skip_verify)
    with _progress() as progress:
        task = progress.add_task("backup", total=None)
        result = bk.backup(spec, to, data_dir=data_dir, keep=keep, timeout=timeout,
                           progress=_progress_cb(progress, task))
    m = result.manifest
    size = sum(f["size"] for f in m["files"])
    _say(f"backup {result.path}: {m['keys']} keys ({m['expires']} with TTL), {len(m['files'])} file(s), "
              f"{size} bytes, Redis {m['redis_version']}; verified: {m['verified']['rdb']}")
    if "aof" in m["verified"]:
        _say(f"AOF verified: {m['verified']['aof']}")
    for p in result.pruned:
        _say(f"retention (--keep {keep}): deleted {p}")
    if json_path is not None:
        json_path.write_text(json.dumps({"path": str(result.path), "manifest": m,
                                         "pruned": [str(p) for p in result.pruned]}, indent=2) + "\n")


def _print_backups(rows: list[dict[str, Any]], json_path: Path | None) -> None:
    from rich.table import Table

    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2) + "\n")
    table = Table(title="backups", title_justify="left")
    for col in ("name", "created", "keys", "bytes", "redis", "aof"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], f"[red]{escape(r['error'])}[/]", "", "", "", "")
        else:
            table.add_row(r["name"], str(r["created"]), str(r["keys"]), str(r["size"]), str(r["redis_version"]),
                          "yes" if r["aof"] else "no")
    out.print(table)


@app.command()
@_exits
def restore(
    from_: Annotated[Path, typer.Option("--from", help="A backup directory written by `redisops backup`",
                                        file_okay=False)],
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    insecure_skip_verify: Insecure = False,
    data_dir: Annotated[Path | None, typer.Option(help="The data dir Redis loads from (volume path on this host)")]
    = None,
    force: Annotated[bool, typer.Option(help="Stop a running server with SHUTDOWN NOSAVE (admin) first")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for Redis to come back and verify the key count")]
    = 0.0,
    verify_only: Annotated[bool, typer.Option(help="Only verify the backup (and, if Redis answers, its key count)")]
    = False,
) -> None:
    """Verify a backup's checksums, then put it in place of a stopped server's data (safely)."""
    from redisops import backup as bk

    spec = _resolve(stack_outputs, stack, insecure_skip_verify)
    with _progress() as progress:
        task = progress.add_task("restore", total=None)
        cb = _progress_cb(progress, task)
        if verify_only:
            manifest, problems = bk.verify_backup(from_, cb)
            if problems:
                raise OperationError("backup verification failed:\n  " + "\n  ".join(problems))
            verdict = bk.verify_server(spec, manifest, max(wait, spec.timeout_s), cb)
            if verdict is None:
                # Offline validation (the guide's monthly "verify backup integrity") needs no server.
                _say(f"backup {from_} verified (checksums, redis-check-rdb/aof): {manifest.get('keys')} keys; "
                     f"server at {spec.display_url} not reachable, key count not compared")
                return
            _say(f"backup {from_} verified (checksums, redis-check-rdb/aof); server: {verdict}")
            return
        result = bk.restore(spec, from_, data_dir=data_dir, force=force, wait=wait, progress=cb)
    _say(f"restored {', '.join(result.restored)} into {result.data_dir}")
    if result.moved_aside is not None:
        _say(f"previous files moved to {result.moved_aside}")
    _say(result.message)


Credential = Annotated[str, typer.Option(
    "--credential", help="admin (REDIS_ADMIN_PASSWORD), or app: ElastiCache token mode, where the AUTH token is "
    "the built-in full-access `default` user and no admin user exists")]


def _credential(value: str) -> rc.Role:
    if value not in ("admin", "app"):
        raise UsageError(f"--credential {value!r}: expected admin or app")
    return "admin" if value == "admin" else "app"


def _functions_result(result: dict[str, Any], json_path: Path | None) -> None:
    _say(str(result["message"]))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if not result["passed"]:
        raise typer.Exit(1)


@functions_app.command("load")
@_exits
def functions_load(
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    insecure_skip_verify: Insecure = False,
    credential: Credential = "admin",
    json_path: JsonOut = None,
) -> None:
    """FUNCTION LOAD REPLACE the library (admin credential), then check its ratelimit_version."""
    from redisops import functions

    spec = _resolve(stack_outputs, stack, insecure_skip_verify)
    _functions_result(functions.load(spec, _credential(credential)), json_path)


@functions_app.command("status")
@_exits
def functions_status(
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    insecure_skip_verify: Insecure = False,
    json_path: JsonOut = None,
) -> None:
    """The server's ratelimit_version (read as the application user) against this package; exit 1 if
    missing or older."""
    from redisops import functions

    spec = _resolve(stack_outputs, stack, insecure_skip_verify)
    _functions_result(functions.status(spec), json_path)


@app.command()
@_exits
def env(
    stack_outputs: StackOutputs = None,
    stack: Stack = None,
    show_secrets: Annotated[bool, typer.Option(help="Print passwords, tokens and secrets instead of a mask")] = False,
) -> None:
    """Print the application's .env body from stack outputs (*_PASSWORD, *_TOKEN, *_SECRET masked unless asked)."""
    from infra.envcontract import SECRET_VARIABLES, render_dotenv

    if stack_outputs is not None:
        outputs = rc.load_outputs_file(stack_outputs)
        source = f"--stack-outputs {stack_outputs}"
    elif stack is not None:
        outputs = rc.pulumi_outputs(stack)
        source = f"--stack {stack}"
    else:
        raise UsageError("env needs --stack-outputs FILE or --stack NAME (the stack output `env`)")
    env_out = outputs.get("env")
    if not isinstance(env_out, dict):
        raise UsageError(f"{source}: no `env` output (a dict of REDIS_* and RATE_LIMIT_* variables)")
    values = {str(k): "" if v is None else str(v) for k, v in env_out.items()}
    if not show_secrets:
        values = {k: ("****" if (k in SECRET_VARIABLES or k.endswith(SECRET_SUFFIXES)) and v else v)
                  for k, v in values.items()}
    sys.stdout.write(render_dotenv(values))


@app.command()
@_exits
def bench(
    out_dir: Annotated[Path, typer.Option("--out", help="Where ratelimit.json (+ .png) go")] = Path("bench/results"),
    decisions: Annotated[int, typer.Option(min=100)] = 20_000,
    rounds: Annotated[int, typer.Option(min=1, help="Throughput rounds per contender (best is kept)")] = 5,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Also write the PNG chart")] = True,
) -> None:
    """The rate limiter's benchmark (ratelimit.bench) against a throwaway loopback redis-server."""
    try:
        from ratelimit.bench import run_benchmark
    except ImportError as exc:
        raise OperationError(f"the benchmark is not available: {exc}") from None
    result = run_benchmark(out_dir, decisions=decisions, rounds=rounds, chart=chart)
    summary = {k: result[k] for k in ("ratios", "targets_met", "duration_s") if k in result}
    out.print_json(json.dumps(summary))
    targets = result.get("targets_met", {})
    raise typer.Exit(0 if all(targets.values()) else 1)


@app.command()
@_exits
def plan(
    clients: Annotated[int, typer.Option("--clients", help="Tracked clients (API keys, users, IPs)")],
    rps: Annotated[float, typer.Option("--rps", help="Decisions per second at peak, all tiers together")],
    target: Annotated[str, typer.Option("--target", help="elasticache, sentinel or local-cluster")] = "elasticache",
    headroom: Annotated[float, typer.Option("--headroom", help="Growth to plan for: 0.3 = 30 % more clients "
                                            "and decisions/s")] = 0.3,
    region: Annotated[str | None, typer.Option("--region", help="Price region (default: the stack's aws:region, "
                                               "else us-east-1)")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", help="Replicas per shard (default: the stack's)")]
    = None,
    tier: Annotated[list[str] | None, typer.Option("--tier", help="NAME=ALGORITHM:LIMIT,WINDOW, repeatable; "
                                                   "replaces the stack's tiers")] = None,
    node_type: Annotated[str | None, typer.Option("--node-type", help="Only consider this node type")] = None,
    node_memory: Annotated[str | None, typer.Option("--node-memory", help="local-cluster: memory per node, "
                                                    "e.g. 4gb")] = None,
    stack_name: Annotated[str | None, typer.Option("--stack", help="Read tiers, reserved-memory-percent, replicas "
                                                   "and region from Pulumi.<stack>.yaml")] = None,
    settings: Settings = None,
    bench_file: Annotated[Path | None, typer.Option("--bench", help="Measured figures (default: "
                                                    "bench/results/cluster.json)", dir_okay=False)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON to this file ('-': stdout)",
                                                  dir_okay=False, allow_dash=True)] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Chart of cost and shards from 10k to 1B clients "
                                             "at the same decisions per client", dir_okay=False)] = None,
) -> None:
    """Size the Redis for N clients at R decisions/s from measured figures: memory per tier, shards,
    node type, replicas, network and monthly cost, each with its source."""
    from redisops import plan as pl

    inputs = pl.inputs_from(clients=clients, rps=rps, target=target, headroom=headroom, region=region,
                            replicas=replicas, tiers=tier or [], node_type=node_type,
                            node_memory=_memory("--node-memory", node_memory), stack=stack_name,
                            settings=settings)
    bench_doc = pl.load_bench(bench_file)
    prices = pl.load_prices()
    result = pl.plan(inputs, bench_doc, prices, str(bench_file or "bench/results/cluster.json"))
    if json_out is not None:
        text = json.dumps(result.to_json(), indent=2) + "\n"
        if str(json_out) == "-":
            sys.stdout.write(text)
        else:
            json_out.write_text(text)
    if png is not None:
        pl.chart(pl.sweep(inputs, bench_doc, prices), png)
    if json_out is None or str(json_out) != "-":
        from rich.table import Table

        table = Table("figure", "value", "source", title=f"plan: {clients:,} clients, {rps:,.0f} decisions/s, "
                      f"{result.target} {result.region}, headroom {result.headroom:g}")
        for name, value, source in pl.rows(result):
            table.add_row(name, value, escape(source))
        out.print(table)
        for note in result.assumptions:
            _say(f"assumed: {note}")


@app.command()
@_exits
def loadtest(
    url: Annotated[str | None, typer.Option(help="A running app behind the middleware on loopback (default: start "
                                                 "the example app and a throwaway redis-server)")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="With --url: the Redis to read INFO "
                                                                      "commandstats from (calls per request)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where loadtest.json (+ .png) go")] = Path("bench/results"),
    scale: Annotated[float, typer.Option(help="Multiplies every scenario's request count")] = 1.0,
    window_s: Annotated[int, typer.Option("--window-s", help="Stretch every tier's window to this (0: the guide's); "
                                                             "nothing refills mid-run, so counts are exact")] = 3600,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Stop sending after this long")] = 120.0,
    max_requests: Annotated[int, typer.Option("--max-requests", help="Refuse a plan above this many requests")] = 20_000,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help="Run only these (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table")] = False,
    png: Annotated[bool, typer.Option("--png/--no-png", help="Also write the PNG chart")] = True,
) -> None:
    """The security load test over real HTTP: credential stuffing, flood, many clients, spoofed X-Forwarded-For."""
    try:
        from redisops.loadtest import LoadTestError, markdown_table, run_loadtest, write_chart
    except ImportError as exc:
        raise OperationError(f"the load test needs the dev requirements (httpx, starlette, uvicorn): {exc}") from None
    if redis_url is not None and url is None:
        raise UsageError("--redis-url applies with --url only (without it the test starts its own Redis)")
    try:
        report = run_loadtest(url=url, redis_url=redis_url, scale=scale, window_s=window_s, max_seconds=max_seconds,
                              max_requests=max_requests, only=scenario or None)
    except LoadTestError as exc:
        raise UsageError(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    if png:
        write_chart(report, out_dir / "loadtest.png")
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(markdown_table(report))
        _say(f"{'passed' if report['passed'] else 'FAILED'} in {report['duration_s']} s; "
             f"written {out_dir / 'loadtest.json'}{' and .png' if png else ''}")
    raise typer.Exit(0 if report["passed"] else 1)


@app.command()
@_exits
def render(
    stack: Annotated[str, typer.Option("--stack", help="Stack name (Pulumi.<stack>.yaml)")],
    fmt: Annotated[str, typer.Option("--format", help="yaml, json or md")] = "yaml",
) -> None:
    """Render what a stack would create (resources and properties) without the Pulumi CLI."""
    from redisops.render import RenderError, render_stack

    try:
        sys.stdout.write(render_stack(stack, fmt))
    except RenderError as exc:
        raise UsageError(str(exc)) from None


@app.command()
@_exits
def scan(
    stack: Annotated[str, typer.Option("--stack", help="dev, prod, prod-sentinel (any Pulumi.<stack>.yaml) or all")]
    = "all",
    json_path: JsonOut = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write the summary as Markdown (PR comment)",
                                                  dir_okay=False)] = None,
) -> None:
    """checkov (offline) on the committed renders, with policy/checkov-suppressions.yaml applied.
    Exit 1 on a failure no suppression covers or on a stale suppression (docs/security-scan.md)."""
    from redisops import scan as sc

    try:
        results = sc.scan(None if stack == "all" else [stack])
    except sc.ScanError as exc:
        raise UsageError(str(exc)) from None
    _say(sc.summary_text(results).rstrip())
    if json_path:
        json_path.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    if markdown:
        markdown.write_text(sc.summary_markdown(results))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


def _dev_call(name: str, **kwargs: Any) -> Any:
    from redisops import devstack

    try:
        return getattr(devstack, name)(**kwargs)
    except devstack.DevStackError as exc:
        raise OperationError(str(exc)) from None


@dev_app.command("up")
@_exits
def dev_up(
    stack: Annotated[str, typer.Option(help="Stack name")] = "dev",
    mode: Annotated[str, typer.Option(help="auto, docker or processes")] = "auto",
    smoke: Annotated[bool, typer.Option(help="Run the smoke test once it is up")] = True,
    with_app: Annotated[bool, typer.Option("--app/--no-app", help="Also run the example app (examples/app) on "
                                           "local.ports.app, scraped by Prometheus (process mode)")] = False,
) -> None:
    """Start the dev stack (Docker + Pulumi when present, else local processes)."""
    if mode not in ("auto", "docker", "processes"):
        raise UsageError(f"--mode {mode!r}: expected auto, docker or processes")
    status = _dev_call("up", stack=stack, mode=mode, run_smoke=smoke, app=with_app, out=_say)
    raise typer.Exit(0 if status.healthy and (status.smoke in (None, "passed")) else 1)


@dev_app.command("down")
@_exits
def dev_down(stack: Annotated[str, typer.Option(help="Stack name")] = "dev") -> None:
    """Stop the dev stack and remove its run directory."""
    status = _dev_call("down", stack=stack, out=_say)
    for line in status.lines():
        _say(line)


@dev_app.command("env")
@_exits
def dev_env(
    stack: Annotated[str, typer.Option(help="Stack name")] = "dev",
    engine: Annotated[bool, typer.Option(help="Also export the docker CLI's active engine as DOCKER_HOST")] = True,
) -> None:
    """Print `export` lines for running `pulumi` by hand on the dev stack: the same state backend,
    passphrase and Docker engine as `redisops dev up` (eval "$(redisops dev env)")."""
    for line in _dev_call("shell_env", stack=stack, with_engine=engine):
        sys.stdout.write(line + "\n")


@dev_app.command("mode")
@_exits
def dev_mode(mode: Annotated[str, typer.Option(help="auto, docker or processes")] = "auto") -> None:
    """Print the mode `redisops dev up --mode <mode>` runs in (docker or processes)."""
    if mode not in ("auto", "docker", "processes"):
        raise UsageError(f"--mode {mode!r}: expected auto, docker or processes")
    sys.stdout.write(_dev_call("resolve_mode", mode=mode) + "\n")


@dev_app.command("status")
@_exits
def dev_status(stack: Annotated[str, typer.Option(help="Stack name")] = "dev") -> None:
    """Show the dev stack's services and whether each is healthy (exit 1 when not)."""
    status = _dev_call("status", stack=stack)
    for line in status.lines():
        _say(line)
    raise typer.Exit(0 if status.healthy else 1)


# --- ElastiCache (redisops/aws.py) -------------------------------------------------------------
# Commands that take the replication group and secret from the stack outputs or flags.

RgId = Annotated[str | None, typer.Option("--replication-group-id",
                                          help="Default: stack output replicationGroupId")]
Region = Annotated[str | None, typer.Option(help="AWS region (default: the AWS config chain)")]


def _aws_outputs(stack_outputs: Path | None, stack: str | None) -> dict[str, Any]:
    if stack_outputs is not None and stack is not None:
        raise UsageError("--stack-outputs and --stack are alternatives; expected one of them")
    if stack_outputs is not None:
        return rc.load_outputs_file(stack_outputs)
    if stack is not None:
        return rc.pulumi_outputs(stack)
    return {}


def _output(outputs: dict[str, Any], flag_value: Any, key: str, flag: str) -> Any:
    value = flag_value if flag_value is not None else outputs.get(key)
    if value in (None, "", []):
        raise UsageError(f"{flag} is required (or --stack-outputs/--stack with the output {key}); "
                         "expected the ElastiCache stack's value")
    return value


def _aws_client(region: str | None, service: str) -> Any:
    import boto3

    return boto3.session.Session(region_name=region).client(service)


def _print_json(value: Any) -> None:
    def default(o: Any) -> Any:
        return dataclasses.asdict(o) if dataclasses.is_dataclass(o) and not isinstance(o, type) else str(o)

    sys.stdout.write(json.dumps(value, indent=2, default=default) + "\n")


@app.command()
@_exits
def endpoint(replication_group_id: RgId = None, stack_outputs: StackOutputs = None, stack: Stack = None,
             region: Region = None) -> None:
    """Where clients connect to an ElastiCache replication group (primary or configuration endpoint)."""
    from redisops import aws

    rg = _output(_aws_outputs(stack_outputs, stack), replication_group_id, "replicationGroupId",
                 "--replication-group-id")
    ep = aws.discover_endpoint(_aws_client(region, "elasticache"), rg)
    _print_json({**dataclasses.asdict(ep), "url": ep.url})


@app.command()
@_exits
def snapshot(replication_group_id: RgId = None, stack_outputs: StackOutputs = None, stack: Stack = None,
             region: Region = None, wait: Annotated[bool, typer.Option(help="Wait until available")] = True,
             retention_days: Annotated[int, typer.Option(min=0, help="Then delete manual snapshots older than "
                                                                     "this (0: keep all)")] = 0,
             list_: Annotated[bool, typer.Option("--list", help="List the group's snapshots (manual and "
                                                 "automated, oldest first) instead of taking one")] = False) -> None:
    """ElastiCache backup: a manual snapshot (from a replica when there is one), optionally pruned."""
    from redisops import aws

    rg = _output(_aws_outputs(stack_outputs, stack), replication_group_id, "replicationGroupId",
                 "--replication-group-id")
    client = _aws_client(region, "elasticache")
    if list_:
        _print_json(aws.list_snapshots(client, rg))
        return
    with _progress() as progress:
        progress.add_task(f"snapshot of {rg}", total=None)
        name = aws.create_snapshot(client, rg)
        info = aws.wait_snapshot_available(client, name) if wait else None
        pruned = aws.prune_snapshots(client, rg, retention_days=retention_days) if retention_days else []
    _print_json({"snapshot": name, "status": info.status if info else "creating", "pruned": pruned})


SECRET_OUTPUTS = {"app": "authSecretArn", "monitor": "monitorSecretArn", "admin": "adminSecretArn"}


@app.command("rotate-token")
@_exits
def rotate_token(replication_group_id: RgId = None, stack_outputs: StackOutputs = None, stack: Stack = None,
                 region: Region = None,
                 user: Annotated[str, typer.Option(help="RBAC user whose password rotates: app, monitor or admin "
                                                        "(token mode: app, the AUTH token)")] = "app",
                 secret_id: Annotated[str | None, typer.Option(help="Default: stack output authSecretArn "
                                                                    "(monitorSecretArn, adminSecretArn)")] = None,
                 ca_cert: Annotated[str | None, typer.Option(help="CA bundle for the TLS check")] = None,
                 dry_run: Annotated[bool, typer.Option(help="Show what would happen")] = False) -> None:
    """Rotate the ElastiCache credential with no refused client: RBAC user password (two valid at
    once, then only the new one) or AUTH token (ROTATE, then SET); the new value goes to Secrets
    Manager and is verified over TLS before the old one stops working."""
    from redisops import aws

    if user not in SECRET_OUTPUTS:
        raise UsageError(f"--user {user!r}: expected one of {', '.join(SECRET_OUTPUTS)}")
    outputs = _aws_outputs(stack_outputs, stack)
    rg = _output(outputs, replication_group_id, "replicationGroupId", "--replication-group-id")
    secret = _output(outputs, secret_id, SECRET_OUTPUTS[user], "--secret-id")
    result = aws.rotate_credential(
        _aws_client(region, "elasticache"), _aws_client(region, "secretsmanager"), rg, secret, dry_run=dry_run,
        verify=lambda ep, name, password: aws.verify_with_redis(ep, name, password, ca_cert=ca_cert))
    _print_json(result)


@app.command("key-policy")
@_exits
def key_policy(stack_outputs: StackOutputs = None, stack: Stack = None, region: Region = None,
               kms_key_arn: Annotated[str | None, typer.Option(help="Default: stack output kmsKeyArn")] = None,
               alarm_topic_arn: Annotated[list[str] | None, typer.Option(
                   help="Encrypted alarm topic (repeatable); default: stack output alarmTopicArn")] = None,
               log_group: Annotated[list[str] | None, typer.Option(
                   help="Encrypted log group name (repeatable); default: stack output logGroups")] = None) -> None:
    """Check a KMS key's policy lets CloudWatch alarms and CloudWatch Logs use it for this stack's
    topic and log groups (needed when elasticache.kmsKeyArn names your own key); exit 1 and print
    the statements to add when it does not."""
    from redisops import aws

    outputs = _aws_outputs(stack_outputs, stack)
    key = _output(outputs, kms_key_arn, "kmsKeyArn", "--kms-key-arn")
    topics = alarm_topic_arn or ([outputs["alarmTopicArn"]] if outputs.get("alarmTopicArn") else [])
    groups = log_group or list((outputs.get("logGroups") or {}).values())
    report = aws.check_key_policy(_aws_client(region, "kms"), key, alarm_topic_arns=topics, log_group_names=groups)
    _print_json({"keyArn": report.key_arn, "ok": report.ok, "missing": report.missing,
                 "requiredStatements": report.required_statements})
    raise typer.Exit(0 if report.ok else 1)


@app.command()
@_exits
def alarms(stack_outputs: StackOutputs = None, stack: Stack = None, region: Region = None,
           name: Annotated[list[str] | None, typer.Option("--name", help="Alarm name (repeatable); "
                                                          "default: stack output alarmNames")] = None,
           prefix: Annotated[str | None, typer.Option(help="Alarm name prefix")] = None) -> None:
    """CloudWatch alarm states of the stack; exit 1 when any is in ALARM or missing."""
    from redisops import aws

    names = name or _aws_outputs(stack_outputs, stack).get("alarmNames") or []
    if not names and not prefix:
        raise UsageError("alarms needs --name, --prefix or --stack-outputs/--stack with the output alarmNames")
    states = aws.alarm_status(_aws_client(region, "cloudwatch"), names=names, prefix=prefix)
    _print_json(states)
    raise typer.Exit(1 if any(a.state in ("ALARM", "MISSING") for a in states) else 0)


@app.command()
@_exits
def updates(replication_group_id: RgId = None, stack_outputs: StackOutputs = None, stack: Stack = None,
            region: Region = None, json_out: JsonOut = None) -> None:
    """Pending ElastiCache service updates, security first; exit 1 when a security update is past its
    recommended apply-by date."""
    from redisops import updates as up

    rg = _output(_aws_outputs(stack_outputs, stack), replication_group_id, "replicationGroupId",
                 "--replication-group-id")
    actions = up.pending_updates(_aws_client(region, "elasticache"), rg)
    late = up.past_due(actions)
    if json_out is not None:
        json_out.write_text(json.dumps({"replicationGroupId": rg, "pending": [dataclasses.asdict(a) for a in actions],
                                        "pastDue": [a.service_update for a in late]}, indent=2) + "\n")
    if not actions:
        _say(f"{rg}: no pending service updates")
    else:
        from rich.table import Table

        table = Table("service update", "type", "severity", "status", "apply by", "past due", title=rg)
        for a in actions:
            table.add_row(escape(a.service_update), a.type, a.severity, a.status, a.apply_by or "-",
                          "[bold red]YES[/]" if a.past_due else "")
        out.print(table)
    if late:
        err.print(f"[bold red]failed:[/] {len(late)} security update(s) past the recommended apply-by date: "
                  + escape(", ".join(a.service_update for a in late))
                  + " (apply them: aws elasticache batch-apply-update-action, docs/runbooks/upgrade.md)",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except UsageError as exc:  # raised by commands not wrapped in _exits
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OperationError as exc:
        err.print(f"[bold red]failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # the one place an unexpected error becomes an exit code
        sys.exit(_unexpected(exc))


if __name__ == "__main__":
    main()
