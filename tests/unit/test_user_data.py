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


def test_cloud_inits_own_decompression_gives_back_the_script_starting_with_its_shebang() -> None:
    # What cloud-init does with user data (canonical/cloud-init cloudinit/util.py, decomp_gzip):
    #   with io.BytesIO(encode_text(data)) as buf, gzip.GzipFile(None, "rb", 1, buf) as gh:
    #       return decode_binary(gh.read())      # utf-8
    # and on any exception it quietly keeps the data as it was: a bad stream would reach the
    # part handlers as binary, so the stream must be one GzipFile reads whole, and the text a
    # `#!` script (User-Data Formats: "User-Data Script begins with #!").
    import io

    script = "#!/bin/bash\nset -euo pipefail\necho ok\n"
    with io.BytesIO(base64.b64decode(user_data.pack(script))) as buf, gzip.GzipFile(None, "rb", 1, buf) as gh:
        assert gh.read().decode("utf-8") == script
