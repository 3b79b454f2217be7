"""Reference phone client, built from PROTOCOL.md alone.

A phone works offline: everything the officer does becomes a signed,
hash-chained record in a local SQLite outbox, and evidence files wait next
to it. When a network is there the phone pushes records, pulls changes and
uploads files. Nothing here imports the server: if this client and the
server disagree, one of them breaks the protocol, and tests can tell which.

Typical use::

    phone = Phone("/data/phone-1", "https://fieldcase.example")
    phone.login("officer", "secret")
    phone.enrol("Officer Wang's phone")
    phone.fetch_reference()  # codes and the crew's certificates, for the checks before signing
    case = phone.open_case({"name": "...", "region": "330106"})
    insp = phone.start_inspection({"client_case_id": case}, officers=["<a certified colleague's id>"])
    phone.push()

One module per responsibility: ``phone`` (the :class:`Phone` an app holds), ``transport`` (HTTP, tokens,
retries), ``outbox`` (the SQLite file), ``signing`` (the device key and JWS), ``chain`` (appending and
re-chaining records), ``record_types`` (each record's body), ``pushing`` and ``pulling`` (PROTOCOL §4, §5),
``uploads`` (PROTOCOL §6), ``reference`` and ``checks`` (the reference data, and what is checked before a
record is signed) and ``wire`` (how values are written). This file is the package's public face: it
re-exports the names other code imports, so ``from sync.client import Phone`` works as it always did.
"""

from sync.client.checks import CheckReport, Override, Problem, RecordRefused, Unchecked
from sync.client.outbox import Record
from sync.client.phone import Phone
from sync.client.signing import ZERO_HASH, jws_hash
from sync.client.transport import ApiError, AuthError, SimulatedCutOff
from sync.client.wire import SHANGHAI, b64url, compact_json

__all__ = [
    "SHANGHAI",
    "ApiError",
    "AuthError",
    "CheckReport",
    "Override",
    "Phone",
    "Problem",
    "Record",
    "RecordRefused",
    "SimulatedCutOff",
    "Unchecked",
    "ZERO_HASH",
    "b64url",
    "compact_json",
    "jws_hash",
]
