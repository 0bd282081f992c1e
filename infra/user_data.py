"""EC2 user data as it travels: the cloud-init script, gzip-compressed, then base64-encoded.

EC2 takes at most 16 KB of user data "in raw form, before it is base64-encoded"
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html). cloud-init,
which Debian's cloud AMIs run, uncompresses gzip user data and then treats it "as if it were not
compressed" (cloud-init docs, User-Data Formats, "Gzip Compressed Content":
https://github.com/canonical/cloud-init/blob/20.2/doc/rtd/topics/format.rst), so the
`#!/bin/bash` script still runs as a shell script. Binary data cannot go through pulumi-aws's
`userData` ("Do not pass gzip-compressed data via this argument; see userDataBase64 instead"):
it goes base64-encoded through `user_data_base64`, which EC2 receives as is.

    pack(script) -> str         base64(gzip(script)), deterministic (mtime 0)
    unpack(value) -> str        the script back (gzip optional: plain base64 text too)
    raw_size(value) -> int      what EC2's limit counts: the bytes before base64
"""

from __future__ import annotations

import base64
import binascii
import gzip

# EC2: "User data is limited to 16 KB, in raw form, before it is base64-encoded"
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html); a script
# goes gzip-compressed (`pack`), and the limit counts the compressed bytes.
MAX_BYTES = 16 * 1024
GZIP_MAGIC = b"\x1f\x8b"
# How redisops.render shows a userDataBase64 input: the decoded script under this key, so a
# review reads the script (redisops.tfplan packs it again for checkov).
RENDER_KEY = "(gzip+base64, decoded)"


def pack(script: str) -> str:
    return base64.b64encode(gzip.compress(script.encode(), compresslevel=9, mtime=0)).decode()


def raw_size(value: str) -> int:
    return len(base64.b64decode(value, validate=True))


def unpack(value: str) -> str:
    """The script in `value` (base64 of gzip data, or of plain text). Raises ValueError naming
    what was wrong when it is neither."""
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"user data {value[:40]!r}...: not base64 ({exc})") from None
    if raw.startswith(GZIP_MAGIC):
        raw = gzip.decompress(raw)
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"user data: decoded bytes are not UTF-8 text ({exc})") from None
