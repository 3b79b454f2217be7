"""PROTOCOL §8: the custody log's signed tree heads, its public key, and audit proofs."""

from __future__ import annotations

from flask import Response, request
from marshmallow import Schema, fields, validate

from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import INT64_MAX, Instant, PageArgs, StrictSchema, page_schema, paged
from media import holders
from media.custody import checkpoint
from media.custody import log as custody

blp = Blueprint("custody", __name__, url_prefix="/api/v1/custody", description="Custody log (Merkle tree)")


# Tree sizes and leaf indexes are BigInteger columns: a number past their range is refused here (422) rather
# than by the database driver (a 500 on SQLite, which cannot even bind it).
class HeadArgs(StrictSchema):
    tree_size = fields.Integer(validate=validate.Range(min=0, max=INT64_MAX))


class TreeHeadSchema(Schema):
    tree_size = fields.Integer()
    root_hash = fields.String()
    timestamp = fields.String()
    signature = fields.String()
    key_id = fields.String()
    timestamp_token = fields.String(metadata={
        "description": "the head's RFC 3161 timestamp: standard base64 of the DER TimeStampToken (CMS "
                       "ContentInfo) whose message imprint is SHA-256 of the bytes the signature covers; absent "
                       "until a Time-Stamping Authority (FIELDCASE_TSA_URL) has answered for this head"})


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


class InclusionSchema(Schema):
    leaf_index = fields.Integer()
    tree_size = fields.Integer()
    proof = fields.List(fields.String())


class ConsistencyArgs(StrictSchema):
    first = fields.Integer(required=True, validate=validate.Range(min=1, max=INT64_MAX))
    second = fields.Integer(required=True, validate=validate.Range(min=1, max=INT64_MAX))


class ConsistencySchema(Schema):
    first = fields.Integer()
    second = fields.Integer()
    proof = fields.List(fields.String())


@blp.get("/tree-head")
@authenticated()
@blp.arguments(HeadArgs, location="query")
@blp.response(200, TreeHeadSchema)
@blp.alt_response(404, description="no head of that tree size was stored")
@committed
def tree_head(args):
    """The signed head of the tree as it is now (issued and stored on request), or a stored older one."""
    if "tree_size" in args:
        return custody.stored_head(session(), args["tree_size"])
    return custody.latest_head(session(), state().signer, now=now())


@blp.get("/public-key")
@blp.response(200, KeySchema)
def public_key():
    """The Ed25519 key that signs tree heads (base64url of the raw 32 bytes). Public: anyone may verify."""
    signer = state().signer
    return {"key_id": signer.key_id, "public_key": signer.public_key, "algorithm": "Ed25519"}


@blp.get("/public-keys")
@blp.response(200, KeyringSchema)
def public_keys():
    """Every key that has signed tree heads here: after a key rotation, old heads verify with the retired keys."""
    signer = state().signer
    return {"keys": [{"key_id": kid, "public_key": pub, "algorithm": "Ed25519"}
                     for kid, pub in signer.public_keys().items()], "current": signer.key_id}


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
@blp.alt_response(404, description="no head of that tree size was stored")
@blp.doc(responses={200: {"content": NOTE_TEXT}})
@committed
def checkpoint_note(args):
    """The tree head as a C2SP tlog-checkpoint signed note, with its witness cosignatures. Public, like the key.

    Without `tree_size`, the head of the tree as it is now (issued and stored on request, as for
    `/custody/tree-head`); with it, the stored head of that size.
    """
    note = checkpoint.checkpoint_note(session(), state().signer, state().settings, args.get("tree_size"), now=now())
    return Response(note, mimetype="text/plain", headers={"Cache-Control": "no-store"})


@blp.get("/checkpoint/verifier-key")
@blp.response(200, description="text/plain; charset=utf-8: `<origin>+<hex key ID>+<base64(0x01 || key)>`")
@blp.doc(responses={200: {"content": NOTE_TEXT}})
def checkpoint_verifier_key():
    """The note verifier key (vkey) of the checkpoints, to configure a witness or a client with. Public."""
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
def inclusion(args):
    """RFC 6962 §2.1.1 audit path of a leaf in the tree of the given size."""
    return custody.inclusion(session(), args["leaf_index"], args["tree_size"])


@blp.get("/proofs/consistency")
@authenticated()
@blp.arguments(ConsistencyArgs, location="query")
@blp.response(200, ConsistencySchema)
def consistency(args):
    """RFC 6962 §2.1.2 proof that the tree of size `second` extends the tree of size `first`."""
    return custody.consistency(session(), args["first"], args["second"])
