"""infra/user_data.py: the Sentinel hosts' script as EC2 gets it (gzip, then base64)."""

from __future__ import annotations

import base64
import gzip

import pytest

from infra import user_data


def test_pack_is_gzip_then_base64_deterministic_and_round_trips() -> None:
    script = "#!/bin/bash\nset -euo pipefail\necho 'héllo'\n" * 50
    packed = user_data.pack(script)
    raw = base64.b64decode(packed)
    assert raw[:2] == b"\x1f\x8b" and gzip.decompress(raw).decode() == script  # what cloud-init uncompresses
    assert packed == user_data.pack(script), "mtime 0: the same script packs to the same bytes"
    assert user_data.raw_size(packed) == len(raw) < len(script.encode())
    assert user_data.unpack(packed) == script


def test_unpack_reads_plain_base64_and_refuses_what_is_not_base64() -> None:
    assert user_data.unpack(base64.b64encode(b"#!/bin/sh\ntrue\n").decode()) == "#!/bin/sh\ntrue\n"
    with pytest.raises(ValueError, match="not base64"):
        user_data.unpack("#!/bin/sh\ntrue\n")
