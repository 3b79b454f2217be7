"""Our Blueprint: argument schemas decide about unknown fields (they raise), in every location; and every
operation documents the error answers it shares with all the others, in PROTOCOL's JSON error shape.

Without the second part the OpenAPI document listed, for most operations, only the success and 422, and
left every 401, 403, 404, 409 and 503 to `default`: a client generated from it, or schemathesis checking the
server against it (tests/web/test_api_schema_fuzz.py), could not tell an answer the server means from one it
does not. The statuses come from where they are raised, once for all routes:

- 401 and 403: `context.authenticated` (and the domain's own jurisdiction and role checks) on secured routes;
- 404: every route with a path parameter looks an object up (`NotFound`, also for one outside jurisdiction);
- 400 and 413: a JSON body that does not parse (`Parser` below, `errors.register`), any body over the limit;
- 409: `errors.register` maps a concurrent write of the same key (`IntegrityError`) on every writing route;
- 422: argument validation, and `app._no_nul` / `errors.register` (`DataError`) for text no database stores;
- 431: `init_api`'s header limits, before any route runs;
- 503: the database busy or unavailable, or the server saturated (`admission`), with `Retry-After`.

A route documents anything else it answers itself (`alt_response`), e.g. 410 for a forgotten pull cursor.

Every operation also gets its `operationId` here (`operation_id`), and its `summary` from the first line of its
view's docstring (flask-smorest's rule): tests/web/test_openapi.py holds both to every operation.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from copy import deepcopy
from typing import Any

import flask
import flask_smorest
from webargs.flaskparser import FlaskParser

from backend.web.api.context import ROLES_EXTENSION

WRITE_METHODS = {"post", "put", "patch", "delete"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}


class Parser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        """JSON nested deeper than the parser's recursion allows is invalid JSON (400), not a server error."""
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            self._handle_invalid_json_error(json.JSONDecodeError("nested too deeply", "", 0), req)


def shared_errors(method: str, *, secured: bool, path_parameters: bool, json_body: bool, body: bool,
                  roles: list[str] | None = None) -> dict[int, tuple[str, dict[str, Any] | None]]:
    """The error statuses an operation of this kind can answer, whatever the route does: {status: (why, headers)}."""
    errors: dict[int, tuple[str, dict[str, Any] | None]] = {}
    if json_body:
        errors[400] = ("the request body is not valid JSON", None)
    if secured:
        errors[401] = ("no access token, or one that is invalid, expired or of a deactivated officer", None)
        errors[403] = ("this needs one of the roles: " + ", ".join(roles) if roles
                       else "the caller's roles or part in the matter do not allow this", None)
    if path_parameters:
        errors[404] = ("no such resource, or none within the caller's jurisdiction", None)
    if method in WRITE_METHODS:
        errors[409] = ("conflicts with the current state, or a concurrent request wrote the same data first "
                       "(retry)", None)
    if body:
        errors[413] = ("request body too large", None)
    errors[422] = ("invalid request arguments, or text no database can store (NUL, lone surrogates)", None)
    errors[431] = ("a request header field too large, or too many of them", None)
    errors[503] = ("the server or its database is busy or unavailable; retry after Retry-After seconds",
                   RETRY_AFTER)
    return errors


def operation_id(blueprint: str, endpoint: str, method: str, *, methods: int) -> str:
    """An operation's `operationId`: its Flask endpoint, which is unique in the app, plus the method when one
    endpoint serves several. Derived in this one place so that every operation has one and no two share it (code
    generators name their functions by it); a route may still give its own with `@blp.doc(operationId=...)`."""
    name = f"{blueprint}_{endpoint}"
    return f"{name}_{method}" if methods > 1 else name


def _document_errors(operation: dict[str, Any], method: str, *, path_parameters: bool, error_schema: Any) -> None:
    """Add the shared error responses to one operation's stored doc info; what the route documents wins.

    A HEAD answer has no body (RFC 9110 §9.3.2), so its errors are documented by status and headers alone.
    """
    manual = operation.get("manual_doc", {})
    if method == "head":
        error_schema = None
    locations = {p.get("in") for p in operation.get("arguments", {}).get("parameters", []) if isinstance(p, Mapping)}
    json_body = "json" in locations
    responses = operation.setdefault("response", {}).setdefault("responses", {})
    for status, entries in responses.items():
        # An error the route documents by description alone still answers the error shape: say so.
        if str(status).isdigit() and int(status) >= 400 and error_schema is not None:
            for entry in entries:
                if isinstance(entry, dict) and "schema" not in entry:
                    entry["schema"] = error_schema
    # A decorator may document a response as raw OpenAPI (`admission.admitted`'s 503): that counts, and it answers
    # the error shape too.
    manual_responses = manual.get("responses", {})
    for status, entry in manual_responses.items():
        is_error = str(status).isdigit() and int(status) >= 400 and error_schema is not None
        if is_error and isinstance(entry, dict) and "content" not in entry and "$ref" not in entry:
            entry["content"] = {"application/json": {"schema": error_schema}}
    documented = {str(status) for status in responses} | {str(status) for status in manual_responses}
    errors = shared_errors(method, secured=bool(manual.get("security")), path_parameters=path_parameters,
                           json_body=json_body, body=json_body or bool(locations & {"form", "files"})
                           or "requestBody" in manual, roles=manual.get(ROLES_EXTENSION))
    for status, (description, headers) in errors.items():
        if str(status) not in documented:
            entry: dict[str, Any] = {"description": description, "content_type": None}
            if error_schema is not None:
                entry["schema"] = error_schema
            if headers:
                entry["headers"] = deepcopy(headers)
            responses[status] = [entry]
    ordered = sorted(responses.items(), key=lambda item: str(item[0]))  # the doc lists them by status
    responses.clear()
    responses.update(ordered)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser(unknown=None)

    def register_views_in_doc(self, api: Any, app: flask.Flask, spec: Any, *, name: str, parameters: Any) -> None:
        """Write the operations out with the shared error responses added (on a copy: an app per test re-registers)."""
        own = self._docs
        self._docs = deepcopy(own)
        try:
            for endpoint, info in self._docs.items():
                rule = next(app.url_map.iter_rules(f"{name}.{endpoint}"))
                methods = [method for method in info if method != "parameters"]
                for method in methods:
                    operation = info[method]
                    _document_errors(operation, method, path_parameters=bool(rule.arguments),
                                     error_schema=api.ERROR_SCHEMA)
                    operation.setdefault("manual_doc", {}).setdefault(
                        "operationId", operation_id(name, endpoint, method, methods=len(methods)))
            super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)
        finally:
            self._docs = own


class Api(flask_smorest.Api):
    """flask-smorest's Api, writing the OpenAPI document when someone first reads it rather than at start.

    Writing the operations out is two thirds of building an app (~0.13 s of ~0.2 s): every process and every
    test app paid it, and only `/api/v1/openapi.json`, the docs page and the spec's readers need the result.
    The same goes for the error response of every HTTP status that flask-smorest adds to the document's
    components (a third of what was left). The routes themselves are registered at once, as before; only the
    document waits, and is written in the order it always was. A lock keeps two first readers in two threads
    from writing it twice, or the second from reading half of it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pending: list[Callable[[], None]] = []
        self._doc_lock = threading.Lock()
        self._writer: int | None = None
        self._spec: Any = None
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def spec(self) -> Any:
        # Another thread waits until the whole document is written, not just begun; flask-smorest's own parts read
        # `spec` while being written, and get it as it stands.
        if self._pending and self._writer != threading.get_ident():
            with self._doc_lock:
                self._writer = threading.get_ident()
                try:
                    while self._pending:
                        self._pending[0]()
                        del self._pending[0]
                finally:
                    self._writer = None
        return self._spec

    def _register_responses(self) -> None:
        self._pending.append(super()._register_responses)

    def _register_etag_headers(self) -> None:  # written after the responses, as flask-smorest does
        self._pending.append(super()._register_etag_headers)

    def _register_pagination_header(self) -> None:
        self._pending.append(super()._register_pagination_header)

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)

        def write() -> None:
            blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
            self._spec.tag({"name": name, "description": blp.description})
        self._pending.append(write)
