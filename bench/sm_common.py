"""Helpers shared by the national-algorithm benches (issue 23): SM3 in hex, and OpenSSL's own SM2 rates as a peer."""

from __future__ import annotations

import hashlib
import re
import subprocess

from cryptography.hazmat.primitives import hashes


def sm3_hex(data: bytes) -> str:
    """SM3 in lower-case hex: hashlib's when the interpreter's OpenSSL has it, else `cryptography`'s."""
    try:
        return hashlib.new("sm3", data).hexdigest()
    except ValueError:
        digest = hashes.Hash(hashes.SM3())
        digest.update(data)
        return digest.finalize().hex()


def openssl_sm2_speed(seconds: int = 2) -> tuple[float, float] | None:
    """OpenSSL's SM2 (sign/s, verify/s) on one core (`openssl speed sm2`), or None without it."""
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "sm2"], capture_output=True, text=True,
                             timeout=60 + 4 * seconds).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        m = re.search(r"SM2 \(CurveSM2\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            return float(m.group(1)), float(m.group(2))
    return None
