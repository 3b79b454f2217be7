"""PROTOCOL §8: a case's evidence package, streamed as a ZIP (see media.package for its layout)."""

from __future__ import annotations

from flask import Response
from marshmallow import fields, validate

from backend.core.models import Officer
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, current_officer, now, session, state
from backend.web.api.schemas import StrictSchema
from media import package
from media.custody import heads

blp = Blueprint("packages", __name__, url_prefix="/api/v1", description="Evidence packages")

ROLES = ("custodian", "reviewer", "legal_reviewer", "admin")


class PackageArgs(StrictSchema):
    purpose = fields.String(required=True, validate=validate.Length(min=1, max=500),
                            metadata={"description": "why the package is made; kept in each item's custody log"})
    evidence = fields.List(fields.String(validate=validate.Length(min=1, max=40)),
                           validate=validate.Length(min=1, max=500),
                           metadata={"description": "repeat to export only these evidence items of the case, with "
                                                    "just the records and proofs they need"})


@blp.get("/cases/<case_id>/package")
@authenticated(*ROLES)
@blp.arguments(PackageArgs, location="query")
@blp.response(200, description="application/zip: manifest.json, evidence-list.csv/.html/.pdf, files/, "
                               "package-index.json")
@blp.doc(responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
def case_package(args, case_id):
    """The case's evidence package, verifiable offline with `fieldcase verify-package`.

    The export is logged and committed, then the signed tree head that proves
    it is taken and committed, before the first byte is sent, so errors still
    answer JSON. The ZIP is then streamed by a generator that pulls the files
    from the store chunk by chunk through zipfile into a small buffer: no
    temporary file, no thread, memory bounded by one chunk whatever the case's size. The generator does not touch
    the database, so the request's session is released as soon as streaming starts.
    """
    return package_response(current_officer(), case_id, args["purpose"], args.get("evidence"))


def package_response(viewer: Officer, case_id: str, purpose: str, items: list[str] | None) -> Response:
    """The export's three steps, each its own transaction, for the API and the console alike: log the export,
    take the signed head that covers it, then stream the package proven against that head."""
    s, st = session(), state()
    export = package.record_export(s, viewer, case_id, purpose=purpose, items=items, now=now())
    s.commit()  # the export events are custody leaves before the head that proves them is signed
    head = heads.latest_head(s, st.signer, now=now())
    s.commit()  # the head is stored (on PostgreSQL, its advisory lock released)
    prepared = package.prepare_package(s, st.signer, viewer, export, head)
    return Response(prepared.chunks(st.store), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{prepared.filename}"',
        "X-Package-Id": prepared.id, "Cache-Control": "no-store"})
