"""verify.html, the no-install verifier every package carries (PROTOCOL "Evidence packages, as built").

A clerk without fieldcase opens it from disk in a current browser and picks the package's ZIP: the page runs the
checks of `fieldcase verify-package` with the browser's Web Crypto (SHA-256, Ed25519) and, for what an SM2 device
signed, an SM3 digest or the SM custody tree (issue 23), the vendored sm-crypto-v2 (vendor/README.md: SM2, SM3;
Web Crypto has neither), and shows the verdict and each problem in Chinese with the English the Python verifier
prints below it.

It must be one file that needs nothing else: a page opened from a USB stick in a court's office has no server to
load a script from, and must not reach out to one. So the sources here (a template, a style sheet and the
scripts, kept apart to be read and reviewed) are assembled into a single page: the vendored library and the scripts
concatenated in dependency order inside one function scope (the library's one global, `SmCryptoV2`, stays inside
it), the constants the Python verifier also uses (each suite's record algorithms and names, the SM2 user ID and
curve order, record subjects, the index's name and fields) written in from their Python homes so the two cannot
drift, and a Content-Security-Policy that allows exactly this script and this style by their SHA-256 and nothing
else (no network, no other script, no form).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from importlib import resources

from backend.core.crypto import SUITES, digests, sm2
from media.package_index import HEAD_FIELDS, INDEX_FORMAT, INDEX_NAME
from media.package_verify.facts import INSPECTION_TYPES, SUBJECTS
from media.package_verify.server_facts import CASE_ACTIONS, CORRECTION_ACTIONS
from media.package_verify.timestamp import FIELD as TIMESTAMP_FIELD
from sync import credit_code
from sync.jws import RECORD_ALGS
from sync.records import EVIDENCE_DIGESTS

NAME = "verify.html"
VENDOR = ("vendor", "sm-crypto-v2.js")  # SM2 and SM3 (vendor/README.md): defines `SmCryptoV2`, imports nothing
SM2_RULE = "sm2_rule.js"  # the SM2 check, shared with the console's in-browser custody check
SCRIPTS = ("text.js", "spelling.js", "sha256.js", "sm3.js", SM2_RULE, "sm2.js", "zip.js", "members.js", "merkle.js",
           "heads.js", "records.js", "evidence.js", "server_facts.js", "facts.js", "corrections.js", "seal.js",
           "sm_tree.js", "timestamp.js", "verify.js", "page.js")
_SLOT = re.compile(r"\{\{(csp|style|script)\}\}")
_BREAKS_OUT = re.compile(r"<!--|<script|</script|</style", re.IGNORECASE)


def _source(*path: str) -> str:
    return resources.files(__package__).joinpath(*path).read_text(encoding="utf-8")


def _constants() -> str:
    suites = {suite.name: {"algs": list(suite.jws_algs), "digest": suite.digest_name,
                           "signature": suite.signature_name, "publicKeyBytes": suite.public_key_bytes}
              for suite in SUITES.values()}
    constants = {"suites": suites, "recordAlgs": list(RECORD_ALGS), "evidenceDigests": list(EVIDENCE_DIGESTS),
                 "sm2": {"userId": sm2.USER_ID.decode("ascii"), "n": f"{sm2.N:064x}",
                         "publicKeyBytes": sm2.PUBLIC_KEY_BYTES, "signatureBytes": sm2.SIGNATURE_BYTES},
                 "subjects": SUBJECTS, "inspectionTypes": list(INSPECTION_TYPES),
                 "caseActions": list(CASE_ACTIONS), "correctionActions": list(CORRECTION_ACTIONS),
                 "indexName": INDEX_NAME, "indexFormat": INDEX_FORMAT, "headFields": list(HEAD_FIELDS),
                 "timestampField": TIMESTAMP_FIELD,
                 "creditCode": {"alphabet": credit_code.ALPHABET, "weights": list(credit_code.WEIGHTS)}}
    return "const CONSTANTS = Object.freeze(" + json.dumps(constants, sort_keys=True) + ");\n"


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(digests.sha256(text.encode("utf-8"))).decode("ascii") + "'"


@functools.cache
def page() -> bytes:
    """The assembled page, the same bytes for every package of this release."""
    script = ('(() => {\n"use strict";\n' + _constants()
              + f"\n/* ---- {'/'.join(VENDOR)} ---- */\n{_source(*VENDOR)}"
              + "".join(f"\n/* ---- {name} ---- */\n{_source(name)}" for name in SCRIPTS) + "})();\n")
    style = _source("verify.css")
    for text in (script, style):
        if found := _BREAKS_OUT.search(text):
            raise ValueError(f"{found.group()!r} in the page's inline code would end it early")
    csp = (f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}; "
           "base-uri 'none'; form-action 'none'")
    slots = {"csp": csp, "style": style, "script": script}
    return _SLOT.sub(lambda m: slots[m.group(1)], _source("verify.html")).encode("utf-8")
