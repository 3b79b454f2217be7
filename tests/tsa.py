"""A throwaway RFC 3161 Time-Stamping Authority for tests: OpenSSL's own (`openssl ts -reply`) behind HTTP.

Everything is made with the `openssl` command line, not with our code: a CA, a TSA certificate under it
(extendedKeyUsage critical timeStamping, as RFC 3161 §2.3 asks), and a `ts` configuration. Each POST of an
`application/timestamp-query` is answered by running `openssl ts -reply` on it: a whole TimeStampResp, with the
signer's certificate and the CA in the token (`-chain`). Our client and checker meet another implementation.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

POLICY = "1.3.6.1.4.1.99999.3161"


def openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], cwd=cwd, input=stdin, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate PEM, key PEM)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
            "-subj", f"/O=fieldcase tests/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash", cwd=folder)
    return cert, key


@dataclass
class TestTSA:
    """OpenSSL's TSA on a loopback port. `available = False` makes it answer 503, as a TSA that is down would;
    `observer`, when set, is called at each request before it is answered, and what it returns is kept in
    `observed` (what the server held, or had committed, while it waited on the TSA)."""

    __test__ = False  # not a test class, whatever its name

    folder: Path
    digests: str = "sha256, sha384, sha512, sm3"  # the imprints it takes: SM3 too, for the SM tree's heads
    url: str = ""
    available: bool = True
    requests: int = 0
    observer: Callable[[], object] | None = None
    observed: list[object] = field(default_factory=list)
    ca: Path = field(init=False)
    signer: Path = field(init=False)
    key: Path = field(init=False)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca, ca_key = make_ca(self.folder, "Test TSA Root")
        self.key, self.signer = self.folder / "tsa.key", self.folder / "tsa.pem"
        (self.folder / "tsa.ext").write_text("basicConstraints=critical,CA:FALSE\n"
                                             "keyUsage=critical,digitalSignature,nonRepudiation\n"
                                             "extendedKeyUsage=critical,timeStamping\n"
                                             "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key), "-out", "tsa.csr",
                "-subj", "/O=fieldcase tests/CN=Test TSA", cwd=self.folder)
        openssl("x509", "-req", "-in", "tsa.csr", "-CA", str(self.ca), "-CAkey", str(ca_key), "-CAcreateserial",
                "-out", str(self.signer), "-days", "3650", "-extfile", "tsa.ext", cwd=self.folder)
        (self.folder / "serial").write_text("01\n")
        (self.folder / "ts.cnf").write_text(
            "[ tsa ]\ndefault_tsa = tsa_config\n[ tsa_config ]\n"
            f"serial = {self.folder / 'serial'}\ncrypto_device = builtin\nsigner_digest = sha256\n"
            f"default_policy = {POLICY}\nother_policies = {POLICY}\ndigests = {self.digests}\n"
            "accuracy = secs:1\nordering = no\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n")

    def reply(self, query: bytes) -> bytes:
        """OpenSSL's TimeStampResp to a DER TimeStampReq."""
        with self._lock:  # one serial file
            self.requests += 1
            (self.folder / "query.tsq").write_bytes(query)
            openssl("ts", "-reply", "-config", "ts.cnf", "-queryfile", "query.tsq", "-inkey", str(self.key),
                    "-signer", str(self.signer), "-chain", str(self.ca), "-out", "reply.tsr", cwd=self.folder)
            return (self.folder / "reply.tsr").read_bytes()

    def verify(self, *, digest: bytes, token: bytes) -> str:
        """What `openssl ts -verify` says of a token over `digest` (SHA-256), with our CA as the trust anchor."""
        (self.folder / "token.der").write_bytes(token)
        done = subprocess.run(["openssl", "ts", "-verify", "-digest", digest.hex(), "-in", "token.der", "-token_in",
                               "-CAfile", str(self.ca)], cwd=self.folder, capture_output=True, timeout=60)
        return (done.stdout + done.stderr).decode(errors="replace")

    def start(self) -> TestTSA:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if tsa.observer is not None:
                    tsa.observed.append(tsa.observer())
                if not tsa.available:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_response(415)
                    self.end_headers()
                    return
                try:
                    answer = tsa.reply(body)
                except RuntimeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/tsa"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="test-tsa").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def misspelt(token: str) -> str:
    """The token without standard base64's padding rule: its `=` dropped, or, for a token that needs none (a DER
    token's length varies from token to token), a length that is no multiple of 4, as an unpadded tail would be."""
    return token.rstrip("=") if token.endswith("=") else token[:-1]
