"""A requests transport that calls the WSGI app in-process, so the reference client runs without sockets."""

from __future__ import annotations

from io import BytesIO
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from werkzeug.test import EnvironBuilder, run_wsgi_app


class WSGIAdapter(BaseAdapter):
    def __init__(self, app) -> None:
        super().__init__()
        self.app = app

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        parts = urlsplit(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        elif body is not None and not isinstance(body, bytes | str):
            body = b"".join(body)
        builder = EnvironBuilder(path=parts.path, query_string=parts.query, method=request.method,
                                 headers=dict(request.headers), data=body,
                                 base_url=f"{parts.scheme}://{parts.netloc}")
        try:
            app_iter, status, headers = run_wsgi_app(self.app, builder.get_environ(), buffered=True)
        finally:
            builder.close()
        resp = requests.Response()
        resp.status_code = int(status.split(" ", 1)[0])
        resp.reason = status.split(" ", 1)[1] if " " in status else ""
        resp.headers = requests.structures.CaseInsensitiveDict(headers.items())
        resp.raw = BytesIO(b"".join(app_iter))
        resp.url = request.url
        resp.request = request
        resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
        return resp

    def close(self) -> None:
        pass


def session_for(app, base: str = "http://fieldcase.test") -> requests.Session:
    s = requests.Session()
    s.mount(base, WSGIAdapter(app))
    return s
