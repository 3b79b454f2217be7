"""Log lines: one JSON object per line (or one plain line on a terminal), each carrying its request's id.

Why the standard library's `logging` with a formatter of our own rather than structlog: everything that logs here
(our code, gunicorn, RQ, SQLAlchemy, Alembic) logs through `logging`, so one handler on the root logger turns all
of it into the same lines, with no new dependency. structlog would still need its bridge for those libraries, and
would give the code a second way to log.

A line holds `ts` (UTC, RFC 3339), `level`, `logger`, `msg` (for an event a short name: `access`, `push`), the
fields bound to what is running (`request_id` in a request, `job` in a job: `bind`), and the call's `extra=`
fields. Every record is one line, in both formats: an exception becomes fields of its event, `error` (its
class) and `trace` (`file:line function` frames joined by ` > `, innermost last), never a wall of traceback.

No personal data: an exception's own text is left out, because it can quote a row (a database error's DETAIL,
SQLAlchemy's bound parameters, a value in a ValueError); a database error gives its SQLSTATE and constraint
instead (`backend.core.db_errors`), and OS and network errors (about addresses and paths, never rows) keep their
text. That holds for exceptions passed as `%s` arguments too. Messages themselves are written by our code, with
ids and counts, never a name, a phone number, a password, a token or a record body.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from backend.core import db_errors

_context: ContextVar[Mapping[str, Any]] = ContextVar("fieldcase_log_context", default={})  # noqa: B039 - never mutated

# LogRecord's own attributes: anything else on a record came from the call's `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# Exceptions whose text is about connections and files, never about rows: kept.
_PLAIN_MODULES = ("redis.", "botocore.", "urllib3.", "requests.")
TRACE_FRAMES = 12
# Libraries' chatter that says nothing to an operator, held to warnings.
QUIET = {"alembic.runtime.plugins": logging.WARNING}
_ROOT = Path(__file__).resolve().parents[2]


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields to every line logged from here on in this thread or task, until `reset` with the token."""
    return _context.set({**_context.get(), **fields})


def reset(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


def context() -> Mapping[str, Any]:
    return _context.get()


# --------------------------------------------------------------------------------------------- exceptions


def _plain(exc: BaseException) -> bool:
    return isinstance(exc, OSError) or type(exc).__module__.startswith(_PLAIN_MODULES)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _where(filename: str) -> str:
    path = Path(filename)
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages") + 1:])
    try:
        return str(path.resolve().relative_to(_ROOT))
    except ValueError:
        return path.name


def compact_trace(tb: TracebackType | None, limit: int = TRACE_FRAMES) -> str:
    """`backend/web/api/sync.py:140 push > sync/push.py:80 push`: the frames on one field, innermost last."""
    frames = traceback.extract_tb(tb)
    shown = " > ".join(f"{_where(f.filename)}:{f.lineno} {f.name}" for f in frames[-limit:])
    return ("… > " if len(frames) > limit else "") + shown


def exception_summary(exc: BaseException) -> str:
    """The exception on one line, without what may be personal: `IntegrityError (UniqueViolation sqlstate=23505
    constraint=officers_cert_number_key)`, `ConnectionError: Error 111 connecting to …`, or just `ValueError`."""
    name = type(exc).__name__
    if db_errors.is_db_error(exc):
        return f"{name} ({db_errors.summary(exc)})"
    if _plain(exc):
        return f"{name}: {_one_line(str(exc))}"
    return name


def exception_fields(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"error": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")}
    if db_errors.is_db_error(exc):
        fields.update(db_errors.describe(exc))
    elif _plain(exc):
        fields["error_message"] = _one_line(str(exc))
    fields["trace"] = compact_trace(exc.__traceback__)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        fields["cause"] = exception_summary(cause)
    return fields


# ---------------------------------------------------------------------------------------------- the lines


def _safe(arg: Any) -> Any:
    return exception_summary(arg) if isinstance(arg, BaseException) else arg


def message(record: logging.LogRecord) -> str:
    """The record's message, with exceptions among its arguments reduced to what may be logged of them."""
    args = record.args
    if isinstance(args, Mapping):
        args = {k: _safe(v) for k, v in args.items()}
    elif isinstance(args, tuple):
        args = tuple(_safe(a) for a in args)
    try:
        return str(record.msg) % args if args else str(record.msg)
    except (TypeError, ValueError):
        return f"{record.msg} {args!r}"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "msg": message(record),
        **context(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        fields.update(exception_fields(record.exc_info[1]))
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for a log shipper (journald, Docker, Vector, Fluent Bit, Loki, Elasticsearch)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record), ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """One plain line per record, for a person at a terminal: `time LEVEL logger [request] message key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        fields.pop("ts")
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.") + f"{int(record.msecs):03d}"
        head = f"{when} {fields.pop('level'):<7} {fields.pop('logger')}"
        request = fields.pop("request_id", None)
        text = " ".join(fields.pop("msg").split("\n"))
        rest = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return " ".join(part for part in (head, f"[{request}]" if request else "", text, rest) if part)


def _text_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


class _Handler(logging.Handler):
    """Writes each line to `stream`, or to whatever `sys.stderr` is at that moment (a test's capture, a worker's
    redirected stream), never to a stream closed since."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.target = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = self.target or sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never break what it logs
            self.handleError(record)


def resolve_format(fmt: str, stream: IO[str] | None = None) -> str:
    """`auto`: text when the lines go to a terminal (a person reads them), else JSON (a shipper does)."""
    if fmt != "auto":
        return fmt
    target = stream or sys.stderr
    return "text" if hasattr(target, "isatty") and target.isatty() else "json"


def configure(level: str = "INFO", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Send every logger's records (ours and the libraries') through one handler on the root, in `fmt`.

    Called by each entry point (the command line, `fieldcase serve`, `create_app`); calling it again replaces
    the handler it installed, and leaves alone any other (a test's capture)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if resolve_format(fmt, stream) == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(quiet)


def configured() -> bool:
    return any(isinstance(h, _Handler) for h in logging.getLogger().handlers)
