"""A phone's line to the server that drops once, half way through an upload, over real HTTP.

The story promises that an upload cut off mid-file resumes from the server's `Upload-Offset` (PROTOCOL §6).
This transport adapter makes the cut happen at a known byte and records what the phone does next, so the
checks and the report can show the resume rather than take it on trust.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter


class LineDropped(Exception):
    """Raised inside a request body: the connection goes down with the upload half sent."""


class FlakyLine(HTTPAdapter):
    """张敏's line to the server, over real HTTP: it drops once, half way through one upload.

    The first PUT to `target` sends `cut` bytes of its body (with the whole file's Content-Length) and the
    connection closes, as when the phone leaves the Wi-Fi. What the phone sends afterwards is recorded, so
    the report can show that it asked the server how far it got (HEAD) and sent only the rest.
    """

    def __init__(self, target: str, cut: int) -> None:
        super().__init__()
        self.target, self.cut = target, cut
        self.dropped = False
        self.puts: list[tuple[str | None, int]] = []  # (Content-Range, bytes sent)
        self.probes: list[int] = []  # Upload-Offset answers to the phone's HEAD

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if urlsplit(request.url or "").path != self.target:
            return super().send(request, **kwargs)
        if request.method == "HEAD":
            resp = super().send(request, **kwargs)
            self.probes.append(int(resp.headers.get("Upload-Offset", "-1")))
            return resp
        if request.method != "PUT":
            return super().send(request, **kwargs)
        content_range = request.headers.get("Content-Range")
        if self.dropped:
            self.puts.append((content_range, int(request.headers.get("Content-Length", "0"))))
            return super().send(request, **kwargs)
        self.dropped = True
        first = request.body.read(self.cut)  # type: ignore[union-attr]  # the phone streams a file slice

        def half_then_drop() -> Iterator[bytes]:
            yield first
            raise LineDropped

        request.body = half_then_drop()
        with suppress(LineDropped):  # urllib3 closes the connection: the server sees the body end early
            super().send(request, **kwargs)
        self.puts.append((content_range, len(first)))
        self._settle(request)
        raise requests.ConnectionError(f"line dropped after {len(first)} bytes (simulated)")

    @staticmethod
    def _settle(request: requests.PreparedRequest) -> None:
        """Give the server the moment it needs to notice the drop, so the demo is the same on every run."""
        headers = {"Authorization": request.headers.get("Authorization", "")}
        last, deadline = None, time.monotonic() + 5
        while time.monotonic() < deadline:
            offset = requests.head(request.url or "", headers=headers, timeout=5).headers.get("Upload-Offset")
            if offset not in (None, "0") and offset == last:
                return
            last = offset
            time.sleep(0.05)
