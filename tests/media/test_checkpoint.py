"""The custody checkpoint as a C2SP signed note, and witness cosignatures of it (issue #15, item 5).

The note is checked by a verifier written here from the spec text alone (c2sp.org/signed-note,
c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature), which does not import media.custody.checkpoint; it is
first held against the signed-note spec's own example. Witnesses are simulated with their own Ed25519 keys.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from backend.core.config import Settings
from backend.core.models import WitnessCosignature, utcnow
from backend.core.secret_files import init_secrets
from media.custody import checkpoint
from media.custody import log as custody
from media.custody.keys import Signer

ORIGIN = "custody.example.gov.cn/fieldcase"


# -- an independent verifier, from the specs' text ----------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spec_key_id(name: str, signature_type: int, public: bytes) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\x0a" + bytes([signature_type]) + public).digest()[:4]


def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
    """`<key name>+hex(32-bit key ID)+base64(signature type || public key)`."""
    name, hex_id, key64 = vkey.split("+", 2)  # the name and the hex have no '+'; base64 may
    raw = base64.b64decode(key64, validate=True)
    assert len(hex_id) == 8 and hex_id == hex_id.lower()
    return name, bytes.fromhex(hex_id), raw[0], raw[1:]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Text (with its final newline) and signature lines `— <name> base64(key ID || signature)`."""
    assert not any(ord(c) < 0x20 and c != "\n" for c in note)
    cut = note.rindex("\n\n")
    text, block = note[:cut + 1], note[cut + 2:]
    assert block.endswith("\n")
    signatures = []
    for line in block[:-1].split("\n"):
        assert line.startswith("\u2014 "), line
        name, sig64 = line[2:].split(" ")
        assert name and "+" not in name
        signatures.append((name, base64.b64decode(sig64, validate=True)))
    return text, signatures


def verify_ed25519_note(note: str, vkey: str) -> str:
    """The note's text, if the vkey's Ed25519 (type 0x01) signature on it verifies."""
    name, kid, signature_type, public = parse_vkey(vkey)
    assert signature_type == 0x01 and len(public) == 32
    assert spec_key_id(name, 0x01, public) == kid
    text, signatures = split_note(note)
    mine = [sig for n, sig in signatures if n == name and sig[:4] == kid]
    assert mine, "no signature by the key"
    for sig in mine:
        assert len(sig) == 4 + 64
        Ed25519PublicKey.from_public_bytes(public).verify(sig[4:], text.encode())
    return text


def verify_cosignature(note: str, vkey: str) -> int:
    """The timestamp of the vkey's cosignature/v1 (type 0x04) on the note, if it verifies."""
    name, kid, signature_type, public = parse_vkey(vkey)
    assert signature_type == 0x04 and spec_key_id(name, 0x04, public) == kid
    text, signatures = split_note(note)
    (sig,) = [sig for n, sig in signatures if n == name and sig[:4] == kid]
    assert len(sig) == 4 + 8 + 64
    timestamp = int.from_bytes(sig[4:12], "big")
    message = b"cosignature/v1\n" + f"time {timestamp}\n".encode() + text.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(sig[12:], message)
    return timestamp


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    lines = text.split("\n")
    assert len(lines) == 4 and lines[3] == "", "origin, size and root hash, each ending in a newline"
    origin, size, root = lines[:3]
    assert size.isdigit() and size == str(int(size))
    digest = base64.b64decode(root, validate=True)
    assert len(digest) == 32 and b64(digest) == root
    return origin, int(size), digest


class Witness:
    """A witness as the spec has it: its own Ed25519 key, cosigning `cosignature/v1\\ntime T\\n` || checkpoint."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = name
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = spec_key_id(name, 0x04, self.public)
        self.vkey = f"{name}+{self.kid.hex()}+{b64(bytes([0x04]) + self.public)}"

    def cosign(self, text: str, timestamp: int = 1_764_000_000) -> str:
        message = f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()
        return f"\u2014 {self.name} {b64(self.kid + timestamp.to_bytes(8, 'big') + self.key.sign(message))}\n"


WITNESS = Witness("witness.example.org/w1", bytes([7]) * 32)
SECOND = Witness("witness.example.net/armory", bytes([9]) * 32)
STRANGER = Witness("witness.example.com/stranger", bytes([11]) * 32)
IMPOSTOR = Witness(WITNESS.name, bytes([13]) * 32)  # the configured name, another key


def test_the_independent_verifier_accepts_the_signed_note_specs_example():
    vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    note = ("This is an example message.\n\n\u2014 example.com/foo "
            "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
    assert verify_ed25519_note(note, vkey) == "This is an example message.\n"
    with pytest.raises(InvalidSignature):
        verify_ed25519_note(note.replace("example message", "example massage"), vkey)


# -- the format, for a fixed key ----------------------------------------------------------------------------------

FIXED = Signer.from_seed(bytes(range(32)))
FIXED_PUBLIC = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")  # RFC 8032 of 0..31


def test_note_format_and_key_ids_for_a_fixed_key():
    assert FIXED.public_raw == FIXED_PUBLIC
    root_hex = hashlib.sha256(b"").hexdigest()  # the empty tree's root (RFC 6962)
    body = checkpoint.checkpoint_body(ORIGIN, 0, root_hex)
    assert body == f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert checkpoint.checkpoint_body(ORIGIN, 1234, "00" * 32) == f"{ORIGIN}\n1234\n{'A' * 43}=\n"

    kid = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + FIXED_PUBLIC).digest()[:4]
    assert kid.hex() == "7b4b0c6d"
    assert checkpoint.key_id(ORIGIN, 0x01, FIXED_PUBLIC) == kid
    line = checkpoint.log_signature_line(FIXED, ORIGIN, body)
    # Ed25519 is deterministic: one signature per text, the same from OpenSSL's Ed25519 as from the suite
    expected = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).sign(body.encode())
    assert line == f"\u2014 {ORIGIN} {b64(kid + expected)}\n"
    vkey = checkpoint.log_verifier_key(Settings(custody_origin=ORIGIN), FIXED)
    assert vkey == ORIGIN + "+" + kid.hex() + "+" + b64(bytes([1]) + FIXED_PUBLIC)
    assert verify_ed25519_note(body + "\n" + line, vkey) == body
    assert parse_checkpoint(body) == (ORIGIN, 0, hashlib.sha256(b"").digest())


def test_the_default_origin_and_what_configuration_refuses():
    assert checkpoint.origin_for(Settings(), FIXED) == "fieldcase.invalid/custody/" + FIXED.key_id
    for bad in ("two words", "a+b", "tab\there", "x" * 256):
        with pytest.raises(RuntimeError, match="FIELDCASE_CUSTODY_ORIGIN"):
            checkpoint.origin_for(Settings(custody_origin=bad), FIXED)
    assert Settings.from_env({"FIELDCASE_CUSTODY_ORIGIN": ORIGIN, "FIELDCASE_WITNESS_KEYS":
                              f" {WITNESS.vkey} ,{SECOND.vkey},"}).witness_keys == (WITNESS.vkey, SECOND.vkey)
    wrong_id = WITNESS.vkey.replace(WITNESS.kid.hex(), "00000000")
    with pytest.raises(RuntimeError, match="key ID does not match"):
        checkpoint.witness_keys(Settings(witness_keys=(wrong_id,)))
    # A plain Ed25519 vkey (0x01) is the same key signing cosignature/v1, with the 0x04 key ID.
    plain = "+".join([WITNESS.name, spec_key_id(WITNESS.name, 0x01, WITNESS.public).hex(),
                      b64(bytes([1]) + WITNESS.public)])
    assert set(checkpoint.witness_keys(Settings(witness_keys=(plain,)))) == {(WITNESS.name, WITNESS.kid)}


# -- the endpoints ------------------------------------------------------------------------------------------------

@pytest.fixture
def settings(database_url, tmp_path):
    settings = Settings(instance_dir=tmp_path / "instance", database_url=database_url, custody_origin=ORIGIN,
                        witness_keys=(WITNESS.vkey, SECOND.vkey)).resolved()
    init_secrets(settings)  # as `fieldcase init-secrets` (on PostgreSQL no key is made on first use)
    return settings


def grow(db, n: int) -> None:
    with db.transaction() as session:
        for i in range(n):
            custody.record(session, "read", None, "tester", at=utcnow(), purpose=f"checkpoint test {i}")


@pytest.fixture
def custodian(officers):
    return officers.headers(officers.make(roles=("custodian",)))


def served(client, **query) -> str:
    r = client.get("/api/v1/custody/checkpoint", query_string=query)
    assert r.status_code == 200, r.data
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    return r.data.decode("utf-8")


def log_vkey(client) -> str:
    r = client.get("/api/v1/custody/checkpoint/verifier-key")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.data.endswith(b"\n")
    return r.data.decode().strip()


def test_the_checkpoint_is_a_signed_note_of_the_current_head(client, db, officers):
    grow(db, 3)
    note = served(client)  # no token: anyone may verify
    vkey = log_vkey(client)
    key = client.get("/api/v1/custody/public-key").json
    raw = base64.urlsafe_b64decode(key["public_key"] + "=")
    assert parse_vkey(vkey) == (ORIGIN, spec_key_id(ORIGIN, 0x01, raw), 0x01, raw)

    text = verify_ed25519_note(note, vkey)
    origin, size, root = parse_checkpoint(text)
    head = client.get("/api/v1/custody/tree-head", headers=officers.headers(officers.make())).json
    assert (origin, size, root.hex()) == (ORIGIN, 3, head["root_hash"]) and head["tree_size"] == 3
    assert len(split_note(note)[1]) == 1  # no witness has cosigned yet
    assert served(client) == note  # one head, one note

    grow(db, 2)
    newer = verify_ed25519_note(served(client), vkey)
    assert parse_checkpoint(newer)[1] == 5
    assert served(client, tree_size=3) == note  # a stored head's checkpoint stays available
    assert client.get("/api/v1/custody/checkpoint", query_string={"tree_size": 4}).status_code == 404


def test_a_witness_cosigns_the_server_keeps_it_and_serves_it(client, db, custodian, officers):
    grow(db, 2)
    note = served(client)
    text, _ = split_note(note)
    cosigned = note + WITNESS.cosign(text, 1_764_000_000)
    r = client.post("/api/v1/custody/checkpoint/cosignatures", data=cosigned, headers=custodian,
                    content_type="text/plain; charset=utf-8")
    assert r.status_code == 200, r.json
    assert r.json == {"origin": ORIGIN, "tree_size": 2, "cosignatures": [
        {"witness": WITNESS.name, "key_hash": WITNESS.kid.hex(), "timestamp": 1_764_000_000, "status": "stored"}]}

    now = served(client)
    assert now == cosigned  # the witness's line, byte for byte, after the log's
    verify_ed25519_note(now, log_vkey(client))
    assert verify_cosignature(now, WITNESS.vkey) == 1_764_000_000

    # Posting again, or a newer cosignature of the same checkpoint by the same key, changes nothing.
    admin = officers.headers(officers.make(roles=("officer", "admin"), region="330100"))
    for again in (cosigned, note + WITNESS.cosign(text, 1_764_000_500)):
        r = client.post("/api/v1/custody/checkpoint/cosignatures", data=again, headers=admin)
        assert r.status_code == 200, r.json
        assert r.json["cosignatures"][0]["status"] == "already_stored"
        assert r.json["cosignatures"][0]["timestamp"] == 1_764_000_000
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(WitnessCosignature)) == 1

    # A second witness, its line alone under the text (no log signature): both are served.
    r = client.post("/api/v1/custody/checkpoint/cosignatures", data=text + "\n" + SECOND.cosign(text, 1_764_000_100),
                    headers=custodian)
    assert r.status_code == 200 and r.json["cosignatures"][0]["status"] == "stored"
    both = served(client)
    assert verify_cosignature(both, WITNESS.vkey) == 1_764_000_000
    assert verify_cosignature(both, SECOND.vkey) == 1_764_000_100
    assert verify_ed25519_note(both, log_vkey(client)) == text

    grow(db, 1)
    assert len(split_note(served(client))[1]) == 1  # the new head is not cosigned
    assert served(client, tree_size=2) == both


def test_who_may_post_cosignatures(client, db, officers):
    grow(db, 1)
    note = served(client)
    cosigned = note + WITNESS.cosign(split_note(note)[0])
    url = "/api/v1/custody/checkpoint/cosignatures"
    assert client.post(url, data=cosigned).status_code == 401
    officer = officers.headers(officers.make())
    assert client.post(url, data=cosigned, headers=officer).status_code == 403


def test_cosignatures_that_are_refused(client, db, custodian):
    grow(db, 3)
    note = served(client)
    text, _ = split_note(note)
    url = "/api/v1/custody/checkpoint/cosignatures"

    def refused(body: str, words: str) -> None:
        r = client.post(url, data=body.encode("utf-8"), headers=custodian)
        assert r.status_code == 422, (r.status_code, r.json)
        assert words in r.json["message"], r.json["message"]

    refused(note + STRANGER.cosign(text), "unknown witness witness.example.com/stranger")
    refused(note + IMPOSTOR.cosign(text), "is not the configured key of witness")
    # A good cosignature does not carry an unknown one in with it: the whole note is refused.
    refused(note + WITNESS.cosign(text) + STRANGER.cosign(text), "unknown witness")

    origin, size, root = parse_checkpoint(text)
    other_root = f"{origin}\n{size}\n{b64(hashlib.sha256(b'another tree').digest())}\n"
    refused(other_root + "\n" + WITNESS.cosign(other_root), "not the one this log issued")
    never = f"{origin}\n{size + 40}\n{b64(root)}\n"
    refused(never + "\n" + WITNESS.cosign(never), "issued no checkpoint at tree size 43")
    elsewhere = f"other.example/log\n{size}\n{b64(root)}\n"
    refused(elsewhere + "\n" + WITNESS.cosign(elsewhere), "not a checkpoint of this log")
    with_extension = text + "extension line\n"
    refused(with_extension + "\n" + WITNESS.cosign(with_extension), "exactly origin, tree size, root hash")

    # Signed over another text, a timestamp changed after signing, the log's own line forged: they do not verify.
    refused(note + WITNESS.cosign(f"{origin}\n{size}\n{b64(root)}\nx\n"), "does not verify")
    good = base64.b64decode(WITNESS.cosign(text, 1_764_000_000).split(" ")[-1])
    stretched = good[:4] + (1_764_000_001).to_bytes(8, "big") + good[12:]
    refused(note + f"\u2014 {WITNESS.name} {b64(stretched)}\n", "does not verify")
    ((log_name, log_signature),) = split_note(note)[1]
    forged = text + "\n" + f"\u2014 {log_name} {b64(log_signature[:4] + bytes(64))}\n"
    refused(forged + WITNESS.cosign(text), "(this log) does not verify")

    refused(note, "no witness cosignature")
    refused(text, "no blank line")
    refused("not a note at all", "no blank line")
    refused(note + "\n" * 3, "no signature lines")
    refused(note + "- " + WITNESS.cosign(text)[2:], "signature line 2 is not")
    refused(note + "\x07" + WITNESS.cosign(text), "control characters")
    r = client.post(url, data=b"\xff\xfe" + note.encode(), headers=custodian)
    assert r.status_code == 422 and "UTF-8" in r.json["message"]
    r = client.post(url, data=note + WITNESS.cosign(text) * 1000, headers=custodian)
    assert r.status_code == 422 and "longer than" in r.json["message"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(WitnessCosignature)) == 0


def test_no_secret_key_is_ever_exposed(client, db, custodian, app):
    grow(db, 1)
    seed = app.extensions["fieldcase"].signer.private_key
    note = served(client)
    answers = [note, log_vkey(client), client.get("/api/v1/custody/public-key").data.decode(),
               client.get("/api/v1/custody/public-keys").data.decode(),
               client.post("/api/v1/custody/checkpoint/cosignatures", data=note + WITNESS.cosign(split_note(note)[0]),
                           headers=custodian).data.decode(),
               client.get("/api/v1/openapi.json").data.decode()]
    encodings = [seed.hex(), seed.hex().upper(), b64(seed), b64(seed).rstrip("="),
                 base64.urlsafe_b64encode(seed).decode().rstrip("="), b64(bytes([1]) + seed)]
    for answer in answers:
        for encoded in encodings:
            assert encoded[:24] not in answer
