"""The `ratelimit` Functions library text: one source with the EVALSHA scripts, its registrations,
its release number (the live behaviour is proved in tests/integration)."""

from __future__ import annotations

import hashlib
import re

import pytest

from ratelimit import ALGORITHMS, LIBRARY_RELEASE, REGISTRATIONS, Registration, function_library, script
from ratelimit import functions as fn

# The digest of the library text this release number stands for. A change of the library text must
# bump LIBRARY_RELEASE (servers report their version; smoke and clients compare it), then this pin.
RELEASED = {"1.0.0": "95be9ac4e477741b3cdfe0838a097cfe0a1ce85600e2631e3da272f8e46c2aa0",
            "1.1.0": "a85f0b7fbd50ace9b0df2a4b2d92986ae8be45232b5f371a2d7b116ce37d9ce8",
            "1.2.0": "7f4e1bde9b6730c1b2fa2860e26a34e13768e568d7301e612f14a23b9a23350b",
            "1.2.1": "9069ce76fbc7cb476087a2b452c58d17a7c1ea0f942bc85c0066807c3744b7d1",
            "1.2.2": "86db19bd29e610c9bfaec68b29692d697bbf345f45a78981136a61f6d95dc7e4",
            "1.2.3": "350d251f1847c4571d81de0ca3ade5ad43750c8f3647a5c56b217fd46d002b43",
            "1.2.4": "d4e79e778e08997b95eed1a271353fe0126ebede084a34c34c307d5382e81872",
            "1.2.5": "8e11f9a01fca7daac05b687832ac3262947f9edda85dab5bd7409d9ab4919b0b",
            "1.2.6": "d7706cbd393daad0ced64628d46cd4fd8645fafa54cd9a26b31c87c8aa4ffb9a",
            "1.2.7": "fb4b257cf14c30dafea9399b84b1b30712fdde9e754baee4d9da891daec7cb07"}


def test_a_library_change_bumps_the_release() -> None:
    digest = hashlib.sha256(function_library().encode()).hexdigest()
    assert RELEASED.get(LIBRARY_RELEASE) == digest, (
        f"the library text changed (sha256 {digest}): bump LIBRARY_RELEASE in ratelimit/functions.py and pin it here")


def test_the_library_is_one_source_with_the_evalsha_scripts() -> None:
    text = function_library()
    assert text.startswith("#!lua name=ratelimit\n")
    for algorithm in ALGORITHMS:
        # Each algorithm body appears once, verbatim but for its comment lines, wrapped in a
        # function of (KEYS, ARGV).
        assert text.count(fn.code(script(algorithm).source)) == 1
        assert not any(line.lstrip().startswith("--") for line in fn.code(script(algorithm).source).split("\n"))
    assert text.count("(KEYS, ARGV)") == len(ALGORITHMS) + 2  # + ratelimit_multi, ratelimit_version
    # ratelimit_multi calls the algorithm callbacks themselves: no second copy of any algorithm.
    for i, algorithm in enumerate(ALGORITHMS):
        assert f"local {algorithm} = f{i}_ratelimit_{algorithm}\n" in text


def test_registrations_the_contract_names() -> None:
    registered = dict(re.findall(r"function_name='(\w+)', callback=\w+, flags=\{([^}]*)\}", function_library()))
    want = {f"ratelimit_{a}": "" for a in ALGORITHMS}
    want |= {f"ratelimit_{a}_ro": "'no-writes'" for a in ALGORITHMS}
    want["ratelimit_multi"] = ""  # hit_many (issue 15): writes
    want["ratelimit_version"] = "'no-writes'"
    assert registered == want
    assert [r.name for r in REGISTRATIONS] == list(registered)
    assert f"return '{LIBRARY_RELEASE}'" in function_library()


def test_register_adds_a_function_once() -> None:
    row = Registration("ratelimit_probe", "return 1", ("no-writes",))
    fn.register(row)
    try:
        assert "function_name='ratelimit_probe'" in function_library()
        with pytest.raises(ValueError, match="already registered"):
            fn.register(row)
    finally:
        REGISTRATIONS.remove(row)
        fn.function_library.cache_clear()
    assert "ratelimit_probe" not in function_library()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "rate-limit"}, "letters, digits and '_' only"),
    ({"name": "x", "flags": ("no-write",)}, "unknown flags"),
])
def test_a_bad_registration_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registration(**{"body": "return 1", **kwargs})


@pytest.mark.parametrize(("version", "state"), [
    (None, "missing"), (LIBRARY_RELEASE, "current"), ("0.9.9", "older"), ("99.0.0", "newer"), ("garbage", "older"),
])
def test_library_state_by_version(version: str | None, state: str) -> None:
    assert fn.library_state(version) == state
    message = fn.describe_state(fn.library_state(version), version)
    assert ("redisops functions load" in message) is (state in ("missing", "older"))
