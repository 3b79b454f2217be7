"""PROTOCOL §8: the custody log's signed tree heads, its public key, and audit proofs."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, session, state
from backend.web.api.schemas import INT64_MAX, PageArgs, StrictSchema, page_schema, paged
from media import holders
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
    return custody.latest_head(session(), state().signer)


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


class HoldingSchema(Schema):
    evidence_id = fields.String()
    kind = fields.String()
    sha256 = fields.String()
    size = fields.Integer()
    status = fields.String()
    case_id = fields.String(allow_none=True)
    holder_id = fields.String()
    since = fields.DateTime()
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
    return holders.request_transfer(session(), current_officer(), evidence_id, args["to"], args["reason"])


@blp.post("/holdings/<evidence_id>/acknowledge")
@authenticated()
@blp.arguments(AcknowledgeSchema)
@blp.response(200, HoldingSchema)
@committed
def acknowledge(args, evidence_id):
    """The receiver accepts (or refuses) a hand-over waiting for them."""
    return holders.acknowledge(session(), current_officer(), evidence_id, args["accept"], args.get("note"))


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
