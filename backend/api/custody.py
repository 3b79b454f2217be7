"""PROTOCOL §8: the custody log's signed tree heads, its public key, and audit proofs."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from media import custody

from .blueprint import Blueprint
from .context import authenticated, committed, session, state
from .schemas import StrictSchema

blp = Blueprint("custody", __name__, url_prefix="/api/v1/custody", description="Custody log (Merkle tree)")


class HeadArgs(StrictSchema):
    tree_size = fields.Integer(validate=validate.Range(min=0))


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


class InclusionArgs(StrictSchema):
    leaf_index = fields.Integer(required=True, validate=validate.Range(min=0))
    tree_size = fields.Integer(required=True, validate=validate.Range(min=1))


class InclusionSchema(Schema):
    leaf_index = fields.Integer()
    tree_size = fields.Integer()
    proof = fields.List(fields.String())


class ConsistencyArgs(StrictSchema):
    first = fields.Integer(required=True, validate=validate.Range(min=1))
    second = fields.Integer(required=True, validate=validate.Range(min=1))


class ConsistencySchema(Schema):
    first = fields.Integer()
    second = fields.Integer()
    proof = fields.List(fields.String())


@blp.get("/tree-head")
@authenticated()
@blp.arguments(HeadArgs, location="query")
@blp.response(200, TreeHeadSchema)
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
