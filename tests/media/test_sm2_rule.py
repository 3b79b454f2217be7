"""The SM2 check in JavaScript (media/verify_html/sm2_rule.js): verify.html inlines it and the console loads it, so
it is the one rule both browsers' checks apply. Run here in Node, as a page runs it (the vendored library and the
rule as classic scripts in one fresh global), against the server's own check (backend/core/crypto/sm2.py) on the
same inputs: a signature that holds, and every shape and range the server refuses.

The range cases here (r or s 0 or n) the library refuses by itself too. The case the range rule is there for, s + n
spelled in 32 bytes (the library would reduce it and accept), needs s below 2^256 − n (about 2^224): a chance of
about 2^-32 per signature, and no key can be chosen to force it (Z_A depends on the key), so it is not built here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from backend.core.crypto import SM
from backend.core.crypto.sm2 import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, USER_ID, N
from media import verify_html
from tests.core.test_crypto_vectors import SM_CRYPTO_V2, flip, needs_node

RULE = Path(verify_html.__file__).parent / verify_html.SM2_RULE

_RUN = r"""
const fs = require("node:fs");
const vm = require("node:vm");
const [bundle, rule, requestFile] = process.argv.slice(2);
const page = vm.createContext({ crypto: globalThis.crypto, TextEncoder, TextDecoder });
vm.runInContext(fs.readFileSync(bundle, "utf8"), page, { filename: bundle });
vm.runInContext(fs.readFileSync(rule, "utf8"), page, { filename: rule });
page.request = JSON.parse(fs.readFileSync(requestFile, "utf8"));
process.stdout.write(JSON.stringify(vm.runInContext(`request.cases.map((c) => {
  const bytes = (h) => Uint8Array.from(h.match(/../g) || [], (b) => parseInt(b, 16));
  return sm2SignatureHolds(SmCryptoV2, request.pinned, bytes(c.point), bytes(c.message), bytes(c.signature));
})`, page)));
"""


def holds_in_js(folder: Path, cases: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    request = {"pinned": {"userId": USER_ID.decode(), "n": f"{N:064x}", "publicKeyBytes": PUBLIC_KEY_BYTES,
                          "signatureBytes": SIGNATURE_BYTES},
               "cases": [{"point": p.hex(), "message": m.hex(), "signature": s.hex()} for p, m, s in cases]}
    (folder / "run.js").write_text(_RUN, encoding="utf-8")
    (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
    done = subprocess.run(["node", str(folder / "run.js"), str(SM_CRYPTO_V2), str(RULE), str(folder / "request.json")],
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def _int(value: int) -> bytes:
    return value.to_bytes(32, "big")


@needs_node
def test_given_the_shared_rule_then_it_answers_as_the_server_on_every_shape_and_range(tmp_path: Path) -> None:
    private, point = SM.generate()
    message = b'{"root_hash":"ab","timestamp":"2026-12-06T00:00:00Z","tree_size":2}'
    signature = SM.sign(private, point, message)
    r, s = signature[:32], signature[32:]
    cases = {
        "holds": (point, message, signature),
        "a bit of r flipped": (point, message, flip(signature, 5)),
        "another message": (point, message + b" ", signature),
        "r = 0": (point, message, _int(0) + s),
        "s = 0": (point, message, r + _int(0)),
        "r = n": (point, message, _int(N) + s),
        "s = n": (point, message, r + _int(N)),
        "63 bytes": (point, message, signature[:63]),
        "a compressed point": (bytes([2 + (point[64] & 1)]) + point[1:33], message, signature),
        "a point off the curve": (point[:64] + bytes([point[64] ^ 1]), message, signature),
    }
    server = [SM.verify(p, m, sig) for p, m, sig in cases.values()]
    assert server == [True] + [False] * (len(cases) - 1)
    assert dict(zip(cases, holds_in_js(tmp_path, list(cases.values())), strict=True)) == dict(
        zip(cases, server, strict=True))
