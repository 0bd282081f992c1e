"""The versions table: every image and engine line the stacks may run, its default pin, the
lowest version we accept (the floor), the CVE ids that set that floor, and its support end.

One source of truth: settings (`local.images.*`, `engine`/`engineVersion`), the policy pack,
the ElastiCache parameter families, Renovate (renovate.json's regex managers read the
``# renovate:`` comments below) and docs/security.md (generated) all read this module.

Reviewed 2026-12 against the upstream sources cited next to each row. Renovate opens a pull
request when a newer tag of a pinned line exists; a floor only moves up by hand, with the CVE
ids that justify it. A tag-pinned image is checked against its line's floor; a digest alone
names no version, so settings refuse it (pin ``repo:<version>@sha256:<digest>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Component = Literal["redis", "valkey", "exporter", "prometheus", "grafana"]
EngineName = Literal["redis", "valkey"]

REVIEWED = "2026-12"


@dataclass(frozen=True)
class VersionLine:
    """One release line of one component (e.g. redis 7.2), with its default pin and floor."""

    component: Component
    line: str  # version prefix the line covers: "7.2", "3.13", "1" (exporter releases are all 1.x)
    floor: str  # lowest accepted version on this line
    cves: tuple[str, ...]  # CVE ids fixed at or below the floor that set it
    support_end: str  # ISO date, or why there is none
    reason: str = ""  # what the floor protects against when no CVE id is published for it

    def why(self) -> str:
        return ", ".join(self.cves) if self.cves else self.reason

    @property
    def image(self) -> str:
        """The pinned image of this line, e.g. "redis:7.2.16" (PINS)."""
        return PINS[(self.component, self.line)]

    @property
    def pin(self) -> str:
        """The pinned version, e.g. "7.2.16"."""
        version = tag_version(split_image(self.image).tag or "", TAG_PREFIX.get(self.component, ""))
        assert version is not None, self.image
        return version


@dataclass(frozen=True)
class ImageSpec:
    """A container image: which settings key uses it, its repository and tag spelling."""

    key: str  # local.images.<key>
    component: Component
    repository: str  # Docker Hub repository the default pin names
    tag_prefix: str  # "v" for tags like v3.13.2
    default_line: str


@dataclass(frozen=True)
class EngineLine:
    """An ElastiCache engine version the stack allows, and its parameter group family."""

    engine: EngineName
    version: str  # ElastiCache engine_version (major.minor)
    family: str  # parameter group family
    support_end: str
    reason: str  # why this line is accepted (and why nothing below it is)


# --- container images ---------------------------------------------------------------------------
# The Lua-engine class (issue 12): CVE-2025-49844 "RediShell" and -46817/-46818/-46819, -67733.
_LUA_2025 = ("CVE-2025-49844", "CVE-2025-46817", "CVE-2025-46818", "CVE-2025-46819", "CVE-2025-67733")
# Unauthenticated ones on redis (issue 12): fixed in 7.2.8 / 7.2.10 and 7.4.3 / 7.4.5.
_REDIS_UNAUTH_2025 = ("CVE-2025-21605", "CVE-2025-48367", "CVE-2025-32023")
# Valkey's 2026 security releases (8.1.6, 8.1.7, 8.1.9 release notes).
_VALKEY_2026 = (*_LUA_2025, "CVE-2026-21863", "CVE-2026-23479", "CVE-2026-25243", "CVE-2026-23631",
                "CVE-2026-56684", "CVE-2026-63639")

LINES: tuple[VersionLine, ...] = (
    # redis (docker-library official image, built from redis/docker-library-redis).
    # 7.2 stays BSD-3 licensed (7.4+ are RSALv2/SSPL, 8.x adds AGPLv3) and is still supported per
    # github.com/redis/redis/security (endoflife-date/endoflife.date products/redis.md:
    # "7.2 ... eol: false, latest 7.2.13" as of 2026-02); it is also the closest open-source
    # release to ElastiCache's Redis OSS 7.1 and Valkey 7.2 (which forked from 7.2.4).
    # Floor 7.2.13 (issue 12 review, 2026-12): CVE-2024-31449 fixed 7.2.6 (redis/redis#13582),
    # CVE-2024-46981 fixed 7.2.7, CVE-2025-21605 fixed 7.2.8, CVE-2025-48367/-32023 fixed 7.2.10,
    # CVE-2025-49844 "RediShell" and -46817/-46818/-46819 fixed 7.2.11
    # (docker-library/official-images#20011), CVE-2025-67733 fixed 7.2.13.
    # Pin 7.2.16: newest 7.2 tag seen published (redis:7.2.16-bookworm, redis:7.2.16-alpine@sha256:
    # 29e8589c... pinned by downstream projects, 2026-09); the notes of 7.2.14-7.2.16 were not read.
    VersionLine("redis", "7.2", "7.2.13",
                ("CVE-2024-31449", "CVE-2024-46981", *_REDIS_UNAUTH_2025, *_LUA_2025),
                "not announced (supported per github.com/redis/redis/security)"),
    # 7.4 and 8.2: accepted at the floors of the same CVE set (issue 12: fixed in 7.4.8 / 8.2.5);
    # pins are the newest patch seen (endoflife.date redis.md: latest 7.4.8 / 8.2.5, 2026-02-22).
    VersionLine("redis", "7.4", "7.4.8", (*_REDIS_UNAUTH_2025, *_LUA_2025),
                "not announced (supported per github.com/redis/redis/security)"),
    VersionLine("redis", "8.2", "8.2.5", _LUA_2025,
                "not announced (supported per github.com/redis/redis/security)"),
    # valkey (valkey/valkey). Issue 12: the Lua class is fixed in 7.2.11+/8.0.6+/8.1.4+ and later
    # 2026 fixes are in 7.2.14, 8.0.10, 8.1.9. Valkey release notes (8.1.6/8.1.7/8.1.9, mirrored in
    # packaging changelogs): CVE-2025-67733, CVE-2026-21863 (8.1.6); CVE-2026-23479, -25243, -23631
    # (8.1.7); CVE-2026-56684 (TLS use-after-free via CLIENT KILL, RCE), CVE-2026-63639 (8.1.9).
    # 7.2.14 and 8.0.10 are taken as the same security release as 8.1.9 (issue 12 lists them
    # together); their own release notes were not read. Support ends per valkey.io/topics/releases
    # (endoflife.date valkey.md).
    VersionLine("valkey", "7.2", "7.2.14", _VALKEY_2026, "2029-04-16"),
    VersionLine("valkey", "8.0", "8.0.10", _VALKEY_2026, "2027-09-15"),
    # 8.1.10 (2026-08-31) adds an RDMA-only fix (GHSA-jcj7-v34w-v9vv); RDMA is not built here.
    VersionLine("valkey", "8.1", "8.1.9", _VALKEY_2026, "2030-03-31"),
    # oliver006/redis_exporter: tags v1.81.0 .. v1.88.0 (git tags of github.com/oliver006/redis_exporter;
    # v1.88.0 2026-07-23, image pushed by .github/workflows/release.yml as oliver006/redis_exporter:<tag>,
    # scratch base, USER 59000). Floor 1.81.0 (issue 12 / FIELD-NOTES): 1.62's Go runtime and base
    # image carry scanner findings fixed in later releases; no CVE id is tied to the exporter itself.
    # The monitor ACL (redis_conf/acl.py) is derived from the pin's source: see redis_conf/exporter.py.
    VersionLine("exporter", "1", "1.81.0", (), "no end date (single release line)",
                reason="Go runtime and base-image scanner findings in older releases (issue 12 review)"),
    # prom/prometheus: 3.13 is the LTS line (prometheus.io/docs/introduction/release-cycle, as quoted
    # by gitlab-org/omnibus-gitlab!9666: "3.13 is an LTS release with support until July 2027");
    # 3.5 LTS ended 2026-07-31, 2.53 LTS ended 2025-07-31. v3.13.2 (2026-07-29, CHANGELOG.md):
    # [SECURITY] golang.org/x/text CVE-2026-56852; 3.13.0: UI XSS CVE-2026-44990; issue 12:
    # CVE-2026-42154 affects 2.x. Image: default (busybox, USER nobody) variant of the v3.13.2 tag
    # (Dockerfile, Makefile.common DOCKER_REPO=prom).
    VersionLine("prometheus", "3.13", "3.13.2", ("CVE-2026-42154", "CVE-2026-44990", "CVE-2026-56852"),
                "2027-07-31"),
    # grafana/grafana: 12.4 is the last minor of 12.x, supported until 2027-05-24
    # (grafana.com/docs/grafana/latest/upgrade-guide/when-to-upgrade, via endoflife.date grafana.md:
    # latest 12.4.11, 2026-09-15). Grafana 11 ended 2026-06. Floor 12.4.0: CVE-2025-4123 (fixed in
    # 12.0.0+security-01 and every later release) and CVE-2026-21720 (/avatar DoS; affected ranges end
    # at 12.3.0) are both fixed before 12.4.0 (2026-02-24).
    VersionLine("grafana", "12.4", "12.4.0", ("CVE-2025-4123", "CVE-2026-21720"), "2027-05-24"),
)

IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("redis", "redis", "redis", "", "7.2"),
    ImageSpec("exporter", "exporter", "oliver006/redis_exporter", "v", "1"),
    ImageSpec("prometheus", "prometheus", "prom/prometheus", "v", "3.13"),
    ImageSpec("grafana", "grafana", "grafana/grafana", "", "12.4"),
)
# The engine=valkey image for local.images.redis (no default: the default engine is redis).
VALKEY_IMAGE = ImageSpec("redis", "valkey", "valkey/valkey", "", "8.1")

# Last path component of an image repository -> component (so registry mirrors are recognised).
REPOSITORY_NAMES: dict[str, Component] = {
    "redis": "redis", "valkey": "valkey", "redis_exporter": "exporter", "prometheus": "prometheus",
    "grafana": "grafana",
}

TAG_PREFIX: dict[str, str] = {"exporter": "v", "prometheus": "v"}

# The pin of every line. Renovate's regex manager (renovate.json customManagers) reads each
# `# renovate:` comment and the pin on the next line; `versioning=regex:...` keeps its pull
# requests on that line (a 7.2 pin never jumps to 8.x; the exporter takes new 1.x minors).
# Keep one pin per line, in this shape: a test applies renovate.json's regexes to this file.
PINS: dict[tuple[Component, str], str] = {
    # renovate: datasource=docker depName=redis versioning=regex:^(?<major>7)\.(?<minor>2)\.(?<patch>\d+)$
    ("redis", "7.2"): "redis:7.2.16",
    # renovate: datasource=docker depName=redis versioning=regex:^(?<major>7)\.(?<minor>4)\.(?<patch>\d+)$
    ("redis", "7.4"): "redis:7.4.8",
    # renovate: datasource=docker depName=redis versioning=regex:^(?<major>8)\.(?<minor>2)\.(?<patch>\d+)$
    ("redis", "8.2"): "redis:8.2.5",
    # renovate: datasource=docker depName=valkey/valkey versioning=regex:^(?<major>7)\.(?<minor>2)\.(?<patch>\d+)$
    ("valkey", "7.2"): "valkey/valkey:7.2.14",
    # renovate: datasource=docker depName=valkey/valkey versioning=regex:^(?<major>8)\.(?<minor>0)\.(?<patch>\d+)$
    ("valkey", "8.0"): "valkey/valkey:8.0.10",
    # renovate: datasource=docker depName=valkey/valkey versioning=regex:^(?<major>8)\.(?<minor>1)\.(?<patch>\d+)$
    ("valkey", "8.1"): "valkey/valkey:8.1.10",
    # renovate: datasource=docker depName=oliver006/redis_exporter versioning=regex:^v(?<major>1)\.(?<minor>\d+)\.(?<patch>\d+)$
    ("exporter", "1"): "oliver006/redis_exporter:v1.88.0",
    # renovate: datasource=docker depName=prom/prometheus versioning=regex:^v(?<major>3)\.(?<minor>13)\.(?<patch>\d+)$
    ("prometheus", "3.13"): "prom/prometheus:v3.13.2",
    # renovate: datasource=docker depName=grafana/grafana versioning=regex:^(?<major>12)\.(?<minor>4)\.(?<patch>\d+)$
    ("grafana", "12.4"): "grafana/grafana:12.4.11",
}

# Default image per settings key (local.images.<key>): the pin of the component's default line.
DEFAULT_IMAGES: dict[str, str] = {i.key: PINS[(i.component, i.default_line)] for i in IMAGES}
DEFAULT_VALKEY_IMAGE = PINS[(VALKEY_IMAGE.component, VALKEY_IMAGE.default_line)]

# --- ElastiCache engine lines -------------------------------------------------------------------
# docs.aws.amazon.com/AmazonElastiCache/latest/dg/engine-versions.html and ParameterGroups.Engine.html:
# node-based clusters support Redis OSS 7.1/7.0 (family redis7) and Valkey 7.2 (valkey7), 8.0/8.1/8.2
# (valkey8: "Valkey 8.2 parameter changes - Parameter group family: valkey8"). AWS patches engine CVEs
# through service updates (`redisops updates` lists them and fails on a past-due security update),
# so the floor here is functional: Redis Functions (the limiter library, FUNCTION LOAD / FCALL) and
# ACL v2 need 7.0+. Valkey 9.x (family valkey9) is not offered until its parameters and restricted
# commands are mapped (redis_conf/elasticache.py).
ENGINE_LINES: tuple[EngineLine, ...] = (
    EngineLine("redis", "7.0", "redis7", "not announced", "Redis Functions and ACL v2 (7.0+)"),
    EngineLine("redis", "7.1", "redis7", "not announced", "Redis Functions and ACL v2 (7.0+)"),
    EngineLine("valkey", "7.2", "valkey7", "not announced", "first Valkey engine on ElastiCache"),
    EngineLine("valkey", "8.0", "valkey8", "not announced", "Valkey 8 parameter family"),
    EngineLine("valkey", "8.1", "valkey8", "not announced", "Valkey 8 parameter family"),
    EngineLine("valkey", "8.2", "valkey8", "not announced", "Valkey 8 parameter family"),
)
DEFAULT_ENGINE_VERSION = "7.1"

# --- Debian packages (the `sentinel` target's hosts) ---------------------------------------------
# The Sentinel hosts run Debian's own redis-server / redis-sentinel / prometheus-redis-exporter
# (infra/components/sentinel_hosts.py user data), not the images above: Debian backports fixes
# into 7.0.15, so upstream version numbers say nothing and the floor is a Debian package version,
# compared with `dpkg --compare-versions` at boot. A release with no row here is refused by the
# settings (sentinel.amiSsmParameter) and by the boot check (an AMI of any other release).
@dataclass(frozen=True)
class DebianFloor:
    """The lowest accepted Debian version of one binary package on one Debian release."""

    release: str  # codename, as in /etc/os-release VERSION_CODENAME
    number: str  # VERSION_ID: Debian's SSM parameters name a release either way
    package: str
    floor: str  # Debian version (epoch:upstream-revision)
    cves: tuple[str, ...]
    reason: str = ""

    def why(self) -> str:
        return ", ".join(self.cves) if self.cves else self.reason


# redis 5:7.0.15-1~deb12u10 (bookworm-security, 2026-09-24). Source: the package's Debian changelog
# (/usr/share/doc/redis-server/changelog.Debian.gz of that version; the entries the security
# tracker's bookworm "fixed" column follows), which names for each upload the CVEs it fixes:
#   deb12u2 CVE-2024-31449 (Lua bit stack overflow); deb12u3 CVE-2024-46981 (Lua GC);
#   deb12u4 CVE-2025-21605; deb12u5 CVE-2025-32023, CVE-2025-48367; deb12u6 CVE-2025-49844,
#   -46817, -46818, -46819 (the Lua class); deb12u7 CVE-2025-67733; deb12u8 CVE-2026-23631,
#   CVE-2026-25243; deb12u9 CVE-2026-66373 (RESTORE double free);
#   deb12u10 CVE-2026-81934 (TLS pending-data use-after-free, unauthenticated RCE), CVE-2026-92925.
# deb12u7 covers every CVE of issue 12; the floor is deb12u10 because the hosts serve TLS and
# CVE-2026-81934 needs no authentication (docs/decisions.md, "Debian package floors").
_BOOKWORM_REDIS_CVES = ("CVE-2024-31449", "CVE-2024-46981", *_REDIS_UNAUTH_2025, *_LUA_2025,
                        "CVE-2026-23631", "CVE-2026-25243", "CVE-2026-66373", "CVE-2026-81934", "CVE-2026-92925")
DEBIAN_FLOORS: tuple[DebianFloor, ...] = (
    # redis-server and redis-sentinel are binaries of one source package: same version, same fixes.
    DebianFloor("bookworm", "12", "redis-server", "5:7.0.15-1~deb12u10", _BOOKWORM_REDIS_CVES),
    DebianFloor("bookworm", "12", "redis-sentinel", "5:7.0.15-1~deb12u10", _BOOKWORM_REDIS_CVES),
    # Bookworm's only exporter (1.45.0-2; +bN are binary rebuilds): no Debian advisory exists for
    # it. It listens on 127.0.0.1 only and is scraped by the local CloudWatch agent.
    DebianFloor("bookworm", "12", "prometheus-redis-exporter", "1.45.0-2", (),
                reason="no Debian security advisory; loopback-only listener"),
)
# trixie (13) ships redis 8.0 and valkey 8.1: no row until its package changelog is read for the
# same CVEs, so a trixie AMI is refused (docs/decisions.md, "Debian package floors").


def debian_release(name: str) -> str | None:
    """'bookworm' or '12' -> 'bookworm' when the table has floors for it, else None."""
    return next((f.release for f in DEBIAN_FLOORS if name in (f.release, f.number)), None)


def debian_floors(release: str) -> tuple[DebianFloor, ...]:
    return tuple(f for f in DEBIAN_FLOORS if f.release == release)


# Debian's public AMI parameter, the shape of the settings default (docs/sentinel.md); the release
# part is what the floors are keyed by. A custom AMI parameter names no release: refused (the boot
# check would refuse any release outside the table anyway).
DEBIAN_AMI_PARAMETER = re.compile(r"^/aws/service/debian/release/(?P<release>[a-z0-9]+)/latest/"
                                  r"(?P<arch>amd64|arm64)$")


def ami_parameter_problem(parameter: str) -> str | None:
    """None when `parameter` is Debian's AMI parameter of a release with package floors."""
    m = DEBIAN_AMI_PARAMETER.match(parameter)
    releases = ", ".join(dict.fromkeys(f.release for f in DEBIAN_FLOORS))
    example = f"/aws/service/debian/release/{DEBIAN_FLOORS[0].release}/latest/arm64"
    if m is None:
        return (f"expected Debian's AMI parameter /aws/service/debian/release/<release>/latest/<amd64|arm64> "
                f"of a release with package floors ({releases}), e.g. {example}")
    if debian_release(m["release"]) is None:
        return (f"Debian release {m['release']} has no package floor in infra/versions.py (DEBIAN_FLOORS), so its "
                f"redis packages cannot be checked against the CVE fixes; expected one of: {releases}")
    return None


_VERSION = re.compile(r"^\d+(\.\d+)*$")


def parse_version(text: str) -> tuple[int, ...]:
    """'7.2.16' -> (7, 2, 16); ValueError for anything else."""
    if not _VERSION.match(text):
        raise ValueError(f"not a version number: {text!r}")
    return tuple(int(p) for p in text.split("."))


def lines_of(component: Component) -> tuple[VersionLine, ...]:
    return tuple(v for v in LINES if v.component == component)


def line(component: Component, name: str) -> VersionLine:
    return next(v for v in LINES if v.component == component and v.line == name)


def image_spec(key: str) -> ImageSpec:
    return next(i for i in IMAGES if i.key == key)


def engine_versions(engine: str) -> tuple[str, ...]:
    return tuple(e.version for e in ENGINE_LINES if e.engine == engine)


def families() -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.family for e in ENGINE_LINES))


def engine_line(engine: str, version: str) -> EngineLine | None:
    return next((e for e in ENGINE_LINES if e.engine == engine and e.version == version), None)


@dataclass(frozen=True)
class ImageRef:
    """An image reference split into repository, tag and digest."""

    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[-1]


def split_image(image: str) -> ImageRef:
    """'registry:5000/team/redis:7.2.16-alpine@sha256:..' -> repository, tag, digest."""
    rest, _, digest = image.strip().partition("@")
    last = rest.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
    return ImageRef(rest, tag, digest or None)


def tag_version(tag: str, prefix: str = "") -> str | None:
    """The version a tag names: 'v3.13.2' -> '3.13.2', '7.2.16-alpine' -> '7.2.16'; None if none."""
    body = tag[len(prefix):] if prefix and tag.startswith(prefix) else tag
    m = re.match(r"^(\d+(?:\.\d+)+)(?:[-+][A-Za-z0-9._-]+)?$", body)
    return m.group(1) if m else None


def version_problem(component: Component, version: str) -> str | None:
    """None when `version` is on a known line of `component` and at or above its floor."""
    lines = lines_of(component)
    parsed = parse_version(version)
    for v in lines:
        prefix = parse_version(v.line)
        if parsed[:len(prefix)] == prefix:
            if parsed < parse_version(v.floor):
                return (f"{component} {version} is below the floor {v.floor} of its {v.line}.x line "
                        f"({v.why()}); expected {v.floor} or later, e.g. {v.image}")
            return None
    allowed = ", ".join(f"{v.line}.x >= {v.floor}" for v in lines)
    return f"{component} {version} is on no reviewed line; expected one of: {allowed}"


def image_problem(image: str, *, expect: tuple[Component, ...] = ()) -> str | None:
    """Why `image` may not be deployed (unknown component, no version tag, below its floor), or None."""
    ref = split_image(image)
    component = REPOSITORY_NAMES.get(ref.name)
    if component is None or (expect and component not in expect):
        wanted = expect or tuple(dict.fromkeys(REPOSITORY_NAMES.values()))
        return ("expected an image of " + " or ".join(split_image(default_pin(c)).repository for c in wanted)
                + " (its version is checked against the versions table)")
    version = tag_version(ref.tag, TAG_PREFIX.get(component, "")) if ref.tag else None
    if version is None:
        return (f"expected a version tag so the floor can be checked, e.g. {default_pin(component)} "
                f"(optionally with @sha256:<digest>)")
    return version_problem(component, version)


def default_pin(component: Component) -> str:
    spec = VALKEY_IMAGE if component == "valkey" else next(i for i in IMAGES if i.component == component)
    return PINS[(spec.component, spec.default_line)]


def engine_problem(engine: str, version: str) -> str | None:
    """None when ElastiCache `engine` `version` is allowed; else what is."""
    if engine_line(engine, version) is not None:
        return None
    versions = engine_versions(engine)
    if not versions:
        return f"unknown engine {engine!r}; expected redis or valkey"
    floor = versions[0]
    why = next(e.reason for e in ENGINE_LINES if e.engine == engine)
    try:
        below = parse_version(version) < parse_version(floor)
    except ValueError:
        below = False
    if below:
        return (f"{engine} {version} is below the floor {floor} ({why}); expected one of "
                f"{', '.join(versions)}")
    return f"expected one of {', '.join(versions)} for engine {engine}"
