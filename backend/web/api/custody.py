"""PROTOCOL §8: the custody log's signed tree heads, its public key, and audit proofs."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from marshmallow import Schema, fields, validate

from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import INT64_MAX, Instant, PageArgs, StrictSchema, page_schema, paged
from media import holders
from media.custody import checkpoint, heads, sm_tree, trees

blp = Blueprint("custody", __name__, url_prefix="/api/v1/custody", description="Custody log (Merkle tree)")


def _suite_field() -> fields.String:
    return fields.String(load_default="intl", validate=validate.OneOf(trees.SUITES), metadata={
        "description": "which tree: `intl` (SHA-256, Ed25519 heads; the default) or `sm` (the same leaves in SM3, "
                       "SM2-signed heads; only where FIELDCASE_CUSTODY_SUITES includes sm, else 404)"})


class SuiteArgs(StrictSchema):
    suite = _suite_field()


# Tree sizes and leaf indexes are BigInteger columns: a number past their range is refused here (422) rather
# than by the database driver (a 500 on SQLite, which cannot even bind it).
class HeadArgs(StrictSchema):
    tree_size = fields.Integer(validate=validate.Range(min=0, max=INT64_MAX))
    suite = _suite_field()


class TreeHeadSchema(Schema):
    tree_size = fields.Integer()
    root_hash = fields.String()
    timestamp = fields.String()
    signature = fields.String()
    key_id = fields.String()
    timestamp_token = fields.String(metadata={
        "description": "the head's RFC 3161 timestamp: standard base64 of the DER TimeStampToken (CMS "
                       "ContentInfo) whose message imprint is SHA-256 of the bytes the signature covers (with "
                       "`suite=sm`, SM3 of the bytes the SM2 signature covers); absent until a Time-Stamping "
                       "Authority (FIELDCASE_TSA_URL) has answered for this head"})


class KeySchema(Schema):
    key_id = fields.String()
    public_key = fields.String()
    algorithm = fields.String()


class KeyringSchema(Schema):
    keys = fields.List(fields.Nested(KeySchema), metadata={"description": "retired keys first, the current key last"})
    current = fields.String(metadata={"description": "the key_id that signs new heads"})


class InclusionArgs(StrictSchema):
    leaf_index = fields.Integer(required=True, validate=validate.Range(min=0, max=INT64_MAX))
    tree_size = fields.Integer(required=True, validate=validate.Range(min=1, max=INT64_MAX))
    suite = _suite_field()


class InclusionSchema(Schema):
    leaf_index = fields.Integer()
    tree_size = fields.Integer()
    proof = fields.List(fields.String())


class ConsistencyArgs(StrictSchema):
    first = fields.Integer(required=True, validate=validate.Range(min=1, max=INT64_MAX))
    second = fields.Integer(required=True, validate=validate.Range(min=1, max=INT64_MAX))
    suite = _suite_field()


class ConsistencySchema(Schema):
    first = fields.Integer()
    second = fields.Integer()
    proof = fields.List(fields.String())


@blp.get("/tree-head")
@authenticated()
@blp.arguments(HeadArgs, location="query")
@blp.response(200, TreeHeadSchema)
@blp.alt_response(404, description="no head of that tree size was stored; or `suite=sm` where no SM tree is kept, "
                                   "or not yet built over the log's leaves")
@committed
def tree_head(args):
    """The signed head of the tree as it is now (issued and stored on request), or a stored older one; with
    `suite=sm`, the SM tree's (SM3 root, SM2 signature), issued with the intl head at the same size."""
    return head_of(args)


def head_of(args: dict[str, Any]) -> dict[str, Any]:
    """The head `HeadArgs` ask for, in their suite's tree; the console's in-browser verifier asks here too."""
    if args["suite"] == "sm":
        if "tree_size" in args:
            return sm_tree.stored_sm_head(session(), state().signer, args["tree_size"])
        return sm_tree.latest_sm_head(session(), state().signer, now=now())
    if "tree_size" in args:
        return heads.stored_head(session(), args["tree_size"])
    return heads.latest_head(session(), state().signer, now=now())


@blp.get("/public-key")
@blp.arguments(SuiteArgs, location="query")
@blp.response(200, KeySchema)
@blp.alt_response(404, description="`suite=sm` where no SM tree is kept")
def public_key(args):
    """The Ed25519 key that signs tree heads (base64url of the raw 32 bytes); with `suite=sm`, the SM2 key that
    signs the SM tree's heads (base64url of the 65-byte uncompressed point). Public: anyone may verify."""
    signer = state().signer
    if args["suite"] == "sm":
        sm = sm_tree.sm_key(signer)
        return {"key_id": sm.key_id, "public_key": sm.public_key, "algorithm": sm.algorithm}
    return {"key_id": signer.key_id, "public_key": signer.public_key, "algorithm": "Ed25519"}


@blp.get("/public-keys")
@blp.arguments(SuiteArgs, location="query")
@blp.response(200, KeyringSchema)
@blp.alt_response(404, description="`suite=sm` where no SM tree is kept")
def public_keys(args):
    """Every key that has signed tree heads here: after a key rotation, old heads verify with the retired keys
    (`suite=sm`: the SM2 keys of the SM tree's heads)."""
    signer = state().signer
    keyring, algorithm = signer, "Ed25519"
    if args["suite"] == "sm":
        keyring, algorithm = sm_tree.sm_key(signer), "SM2"
    return {"keys": [{"key_id": kid, "public_key": pub, "algorithm": algorithm}
                     for kid, pub in keyring.public_keys().items()], "current": keyring.key_id}


# Checkpoints are text (c2sp.org/tlog-checkpoint, c2sp.org/signed-note), for witnesses and their tools.
NOTE_TEXT = {"text/plain": {"schema": {"type": "string"}}}


class CosignatureSchema(Schema):
    witness = fields.String(metadata={"description": "the witness's key name"})
    key_hash = fields.String(metadata={"description": "hex of its 4-byte cosignature/v1 key ID"})
    timestamp = fields.Integer(metadata={"description": "POSIX seconds, as the witness signed it"})
    status = fields.String(metadata={"description": "`stored`, or `already_stored` when this witness key had "
                                                    "cosigned this checkpoint before (that one is kept)"})


class CosignaturesSchema(Schema):
    origin = fields.String()
    tree_size = fields.Integer()
    cosignatures = fields.List(fields.Nested(CosignatureSchema))


@blp.get("/checkpoint")
@blp.arguments(HeadArgs, location="query")
@blp.response(200, description="text/plain; charset=utf-8: the checkpoint, signed by the custody key as a note, "
                               "then the witness cosignatures received for it")
@blp.alt_response(404, description="no head of that tree size was stored; or `suite=sm` where no SM tree is kept, "
                                   "or not yet built over the log's leaves")
@blp.doc(responses={200: {"content": NOTE_TEXT}})
@committed
def checkpoint_note(args):
    """The tree head as a C2SP tlog-checkpoint signed note, with its witness cosignatures. Public, like the key.

    Without `tree_size`, the head of the tree as it is now (issued and stored on request, as for
    `/custody/tree-head`); with it, the stored head of that size. With `suite=sm`, the SM tree's checkpoint: origin
    `<origin>/sm`, SM3 root, signed with SM2 (signature type 0xff, PROTOCOL "Custody log in the national
    algorithms"); no witness cosigns it.
    """
    note = checkpoint.checkpoint_note(session(), state().signer, state().settings, args.get("tree_size"), now=now(),
                                      suite=args["suite"])
    return Response(note, mimetype="text/plain", headers={"Cache-Control": "no-store"})


@blp.get("/checkpoint/verifier-key")
@blp.arguments(SuiteArgs, location="query")
@blp.response(200, description="text/plain; charset=utf-8: `<origin>+<hex key ID>+<base64(0x01 || key)>` (with "
                               "`suite=sm`: `<origin>/sm+<hex key ID>+<base64(0xff || \"sm2-sm3/v1\" || point)>`)")
@blp.alt_response(404, description="`suite=sm` where no SM tree is kept")
@blp.doc(responses={200: {"content": NOTE_TEXT}})
def checkpoint_verifier_key(args):
    """The note verifier key (vkey) of the checkpoints, to configure a witness or a client with. Public."""
    if args["suite"] == "sm":
        return Response(checkpoint.sm_verifier_key(state().settings, state().signer) + "\n", mimetype="text/plain")
    return Response(checkpoint.log_verifier_key(state().settings, state().signer) + "\n", mimetype="text/plain")


@blp.post("/checkpoint/cosignatures")
@authenticated("admin", "custodian")
@blp.response(200, CosignaturesSchema)
@blp.alt_response(422, description="not a checkpoint note this log issued (origin, size and root of a stored "
                                   "head), a signature line of an unknown witness key or one that does not "
                                   "verify, no witness cosignature at all, or invalid arguments")
@blp.doc(requestBody={"required": True, "description": "the checkpoint note with the witnesses' cosignature/v1 "
                                                       "lines appended, as a witness answers",
                      "content": {"text/plain": {"schema": {"type": "string",
                                                            "maxLength": checkpoint.MAX_NOTE_BYTES}}}})
@committed(attempts=3)
def checkpoint_cosignatures():
    """Store witness cosignatures (c2sp.org/tlog-cosignature) of a checkpoint this log issued; idempotent."""
    return checkpoint.accept_cosignatures(session(), state().signer, state().settings, request.get_data(),
                                          now=now())


class HoldingSchema(Schema):
    evidence_id = fields.String()
    kind = fields.String()
    sha256 = fields.String()
    size = fields.Integer()
    status = fields.String()
    case_id = fields.String(allow_none=True)
    holder_id = fields.String()
    since = Instant()
    pending_to = fields.String(allow_none=True)
    pending_reason = fields.String(allow_none=True)


HoldingPage = page_schema(HoldingSchema, "HoldingPage")


class TransferSchema(StrictSchema):
    to = fields.String(required=True, validate=validate.Length(min=1, max=40))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class AcknowledgeSchema(StrictSchema):
    accept = fields.Boolean(load_default=True)
    note = fields.String(validate=validate.Length(max=500))


@blp.get("/holdings")
@authenticated()
@blp.arguments(PageArgs, location="query")
@blp.response(200, HoldingPage)
def my_holdings(args):
    """Evidence in the caller's custody, and hand-overs waiting for the caller to acknowledge."""
    rows, total = holders.holdings(session(), current_officer(), page=args["page"], page_size=args["page_size"])
    return paged(rows, total, args)


@blp.post("/holdings/<evidence_id>/transfer")
@authenticated()
@blp.arguments(TransferSchema)
@blp.response(200, HoldingSchema)
@committed
def transfer(args, evidence_id):
    """Hand an item in your custody to a custodian, with a reason; it moves once they acknowledge."""
    return holders.request_transfer(session(), current_officer(), evidence_id, args["to"], args["reason"],
                                    now=now())


@blp.post("/holdings/<evidence_id>/acknowledge")
@authenticated()
@blp.arguments(AcknowledgeSchema)
@blp.response(200, HoldingSchema)
@committed
def acknowledge(args, evidence_id):
    """The receiver accepts (or refuses) a hand-over waiting for them."""
    return holders.acknowledge(session(), current_officer(), evidence_id, args["accept"], args.get("note"),
                               now=now())


@blp.get("/proofs/inclusion")
@authenticated()
@blp.arguments(InclusionArgs, location="query")
@blp.response(200, InclusionSchema)
@blp.alt_response(404, description="`suite=sm` where no SM tree is kept")
def inclusion(args):
    """RFC 6962 §2.1.1 audit path of a leaf in the tree of the given size (`suite=sm`: in the SM3 tree)."""
    return inclusion_of(args)


def inclusion_of(args: dict[str, Any]) -> dict[str, Any]:
    """The audit path `InclusionArgs` ask for (a 404 for `suite=sm` where no SM tree is kept); the console's
    in-browser verifier asks here too."""
    if args["suite"] == "sm":
        sm_tree.sm_key(state().signer)
    return trees.inclusion(session(), args["leaf_index"], args["tree_size"], args["suite"])


@blp.get("/proofs/consistency")
@authenticated()
@blp.arguments(ConsistencyArgs, location="query")
@blp.response(200, ConsistencySchema)
@blp.alt_response(404, description="`suite=sm` where no SM tree is kept")
def consistency(args):
    """RFC 6962 §2.1.2 proof that the tree of size `second` extends the tree of size `first` (`suite=sm`: in the
    SM3 tree)."""
    if args["suite"] == "sm":
        sm_tree.sm_key(state().signer)
    return trees.consistency(session(), args["first"], args["second"], args["suite"])
