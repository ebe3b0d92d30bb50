"""Fixtures that run real registries: Debian's ``docker-registry`` (distribution 2.8) on loopback.

- ``registry``: plain HTTP, no auth.
- ``tls_registry``: HTTPS with a certificate made for the test, plus htpasswd (bcrypt) basic auth.
- ``FaultProxy``: a small loopback HTTP proxy in front of a registry that corrupts or cuts blob downloads.
- ``oci_image``: a small two-layer OCI image built with umoci, pushed by skopeo.

Outside CI a missing tool skips the test with a reason; with ``CI=true`` it fails.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"


def require_tool(name: str) -> str:
    path = shutil.which(name) or (name if Path(name).is_file() else None)
    if path is None:
        msg = f"{name} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{msg} (required under CI=true)")
        pytest.skip(msg)
    return path


def require_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"python module {name} is missing (required under CI=true)")
        pytest.skip(f"python module {name} is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str | os.PathLike[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r  # type: ignore[no-any-return]


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    root: Path
    proc: subprocess.Popen[bytes]
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def skopeo_dest_flags(self) -> list[str]:
        flags = ["--dest-tls-verify=false"] if not self.tls else ["--dest-cert-dir", str(self.ca_file.parent)]  # type: ignore[union-attr]
        if self.username:
            flags += ["--dest-creds", f"{self.username}:{self.password}"]
        return flags

    def skopeo_src_flags(self) -> list[str]:
        flags = ["--src-tls-verify=false"] if not self.tls else ["--src-cert-dir", str(self.ca_file.parent)]  # type: ignore[union-attr]
        if self.username:
            flags += ["--src-creds", f"{self.username}:{self.password}"]
        return flags

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost that is its own CA (``ca.crt`` + ``ca.key``)."""
    require_module("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imgcore test registry")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    crt, keyf = directory / "ca.crt", directory.parent / "registry.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyf.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return crt, keyf


def write_htpasswd(path: Path, user: str, password: str) -> None:
    """A bcrypt htpasswd file (the only hash docker-registry accepts): apache2-utils' htpasswd, else python bcrypt."""
    tool = shutil.which("htpasswd")
    if tool is not None:
        line = run(tool, "-nbB", "-C", "5", user, password).stdout.strip()
    else:
        require_module("bcrypt")
        import bcrypt

        line = f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"
    path.write_text(line + "\n")


def start_registry(
    tmp: Path,
    *,
    tls: bool = False,
    user: str | None = None,
    password: str | None = None,
    token: TokenServer | None = None,
    delete: bool = True,
    extra: tuple[str, ...] = (),
) -> Registry:
    """``delete``: whether the registry accepts manifest deletes; ``extra``: more top-level lines for its
    config.yml (``validation:`` ...)."""
    binary = require_tool(REGISTRY_BIN)
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {tmp / 'data'}",
        "  delete:",
        f"    enabled: {'true' if delete else 'false'}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    ca = None
    if tls:
        ca, key = make_cert(tmp / "certs")
        lines += ["  tls:", f"    certificate: {ca}", f"    key: {key}"]
    if user is not None:
        assert password is not None
        write_htpasswd(tmp / "htpasswd", user, password)
        lines += ["auth:", "  htpasswd:", "    realm: imgcore-test", f"    path: {tmp / 'htpasswd'}"]
    if token is not None:
        lines += ["auth:", "  token:", f"    realm: {token.url}/token", f"    service: {token.service}",
                  f"    issuer: {token.issuer}", f"    rootcertbundle: {token.cert}"]  # fmt: skip
    lines += extra
    cfg = tmp / "config.yml"
    cfg.write_text("\n".join(lines) + "\n")
    log = tmp / "registry.log"
    with log.open("wb") as logf:
        proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=logf, stderr=subprocess.STDOUT)
    reg = Registry(f"127.0.0.1:{port}", tmp, proc, tls, ca, user, password, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return reg
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise AssertionError(f"docker-registry did not listen on {port}: {log.read_text()}")


class TokenServer:
    """A bearer-token server as docker-registry's ``auth: token`` expects: ES256 JWTs with an ``x5c`` chain.

    It grants what the ``scope`` parameters ask for when the basic credentials are ``user``/``password``, and
    nothing (an empty ``access`` list) to anonymous clients. ``requests`` records ``(query, had_basic_auth)``.
    """

    service = "imgcore-test"
    issuer = "imgcore-test-issuer"

    def __init__(self, directory: Path, user: str, password: str) -> None:
        require_module("cryptography")
        import base64
        import secrets
        from urllib.parse import parse_qs, urlsplit

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        self.cert, keyf = make_cert(directory / "token-certs")
        key = serialization.load_pem_private_key(keyf.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        der = x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
        self.requests: list[tuple[str, bool]] = []
        outer = self
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

        def b64url(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        def jwt(access: list[dict[str, object]]) -> str:
            now = int(time.time())
            header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
            claims = {"iss": outer.issuer, "sub": user, "aud": outer.service, "exp": now + 300, "nbf": now - 10,
                      "iat": now, "jti": secrets.token_hex(8), "access": access}  # fmt: skip
            signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
            r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urlsplit(self.path).query
                auth = self.headers.get("Authorization")
                outer.requests.append((query, auth is not None))
                if auth is not None and auth != expected:
                    body = b'{"details":"incorrect username or password"}'
                    self.send_response(401)
                else:
                    access = []
                    if auth is not None:
                        for scope in parse_qs(query).get("scope", []):
                            kind, _, rest = scope.partition(":")
                            name, _, actions = rest.rpartition(":")
                            access.append({"type": kind, "name": name, "actions": actions.split(",")})
                    token = jwt(access)
                    body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenServer]]:
    """docker-registry with bearer-token auth (plain HTTP on loopback), user ``bob`` / ``tok-pw``."""
    tmp = tmp_path_factory.mktemp("token-registry")
    server = TokenServer(tmp, "bob", "tok-pw")
    reg = start_registry(tmp, token=server)
    reg.username, reg.password = "bob", "tok-pw"
    yield reg, server
    reg.stop()
    server.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("tls-registry"), tls=True, user="alice", password="s3cret-pw")
    yield reg
    reg.stop()


# --------------------------------------------------------------------------------------------- fault proxy


class FaultProxy:
    """A loopback HTTP proxy in front of a registry that can damage blob downloads.

    ``corrupt``: flip one byte in the body of blob GETs whose digest is in the set.
    ``cut_after``: for blob GETs whose digest is in the dict, send the full Content-Length header but only the given
    number of bytes, then drop the connection; each entry is used ``cuts`` times.
    ``slow``: send blobs whose digest is in the dict slowly, in 64 KiB pieces.
    ``requests`` records ``(method, path, range header)`` of every request.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.corrupt: set[str] = set()
        self.cut_after: dict[str, int] = {}
        self.cuts_left: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.slow: dict[str, float] = {}  # digest -> seconds to sleep after each 64 KiB sent
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                host, port = proxy.upstream.rsplit(":", 1)
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                digest = self.path.rsplit("/", 1)[-1] if "/blobs/sha256:" in self.path else None
                cut = None
                if self.command == "GET" and digest and resp.status in (200, 206):
                    with proxy._lock:
                        if digest in proxy.corrupt and data:
                            data = bytes([data[0] ^ 0xFF]) + data[1:]
                        if digest in proxy.cut_after and proxy.cuts_left.get(digest, 0) > 0:
                            proxy.cuts_left[digest] -= 1
                            cut = proxy.cut_after[digest]
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if cut is not None:
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                delay = proxy.slow.get(digest or "") if self.command == "GET" else None
                if delay:
                    for i in range(0, len(data), 65536):
                        self.wfile.write(data[i : i + 65536])
                        self.wfile.flush()
                        time.sleep(delay)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.host)
    yield proxy
    proxy.close()


# --------------------------------------------------------------------------------------------- images


@dataclass
class OciImage:
    layout: Path
    tag: str
    manifest_digest: str
    layer_digests: list[str]
    config_digest: str


def _layout_manifest(layout: Path, tag: str) -> tuple[str, dict[str, object]]:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            digest = m["digest"]
            return digest, json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
    raise AssertionError(f"{tag} not in {layout}")


def build_oci_image(directory: Path, tag: str = "v1", *, seed: int = 0, big: int = 600_000) -> OciImage:
    """A two-layer OCI image made with umoci: a base layer and an app layer with some incompressible bytes."""
    umoci = require_tool("umoci")
    layout = directory / "layout"
    bundle = directory / "bundle"
    if not layout.exists():
        run(umoci, "init", "--layout", layout)
    run(umoci, "new", "--image", f"{layout}:{tag}")
    run(umoci, "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle)
    rootfs = bundle / "rootfs"
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "os-release").write_text(f"NAME=imgcore-test\nSEED={seed}\n")
    (rootfs / "bin").mkdir(exist_ok=True)
    (rootfs / "bin" / "blob").write_bytes(os.urandom(big))
    (rootfs / "bin" / "sh").symlink_to("blob")
    run(umoci, "repack", "--refresh-bundle", "--image", f"{layout}:{tag}", bundle)
    (rootfs / "app").mkdir()
    (rootfs / "app" / "main.txt").write_text(f"hello from layer two, seed {seed}\n" * 100)
    (rootfs / "etc" / "os-release").unlink()
    run(umoci, "repack", "--refresh-bundle", "--image", f"{layout}:{tag}", bundle)
    run(umoci, "config", "--image", f"{layout}:{tag}", "--config.cmd", "/bin/sh")
    shutil.rmtree(bundle)
    digest, manifest = _layout_manifest(layout, tag)
    layers = [str(layer["digest"]) for layer in manifest["layers"]]  # type: ignore[index, union-attr, attr-defined]
    assert len(layers) == 2, f"umoci built {len(layers)} layers, expected 2"
    return OciImage(layout, tag, digest, layers, str(manifest["config"]["digest"]))  # type: ignore[index, call-overload]


def skopeo_push(image: OciImage, registry: Registry, dest: str, *extra: str) -> None:
    skopeo = require_tool("skopeo")
    run(skopeo, "copy", "--quiet", *registry.skopeo_dest_flags(), *extra,
        f"oci:{image.layout}:{image.tag}", f"docker://{registry.host}/{dest}")  # fmt: skip


@pytest.fixture(scope="session")
def oci_image(tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    return build_oci_image(tmp_path_factory.mktemp("img"))


@pytest.fixture(scope="session")
def pushed_image(oci_image: OciImage, registry: Registry) -> tuple[OciImage, str]:
    """The test image pushed by skopeo to the plain registry as ``<host>/test/app:v1``."""
    skopeo_push(oci_image, registry, "test/app:v1")
    return oci_image, f"{registry.host}/test/app:v1"


# --------------------------------------------------------------------------------------------- hostile hosts


class HostileServer:
    """A loopback HTTP server standing for a CDN or storage host that a registry redirects to, run by someone else.

    ``mode``: ``"basic"`` answers every request 401 with its own ``Basic`` challenge; ``"bearer"`` answers 401
    with a ``Bearer`` challenge whose realm is its own ``/token`` (which hands out a token); ``"serve"`` answers
    ``GET /blob/<digest>`` with the bytes in ``blobs`` and anything else 404.
    ``seen`` records ``(method, path, Authorization header or None)`` of every request it gets.
    """

    def __init__(self, mode: str = "basic") -> None:
        self.mode = mode
        self.blobs: dict[str, bytes] = {}
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                remaining = length
                while remaining > 0:
                    got = self.rfile.read(min(remaining, 1 << 20))
                    if not got:
                        break
                    remaining -= len(got)
                outer.seen.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, body = 404, {}, b'{"errors":[{"code":"NOT_FOUND","message":"nothing here"}]}'
                if self.path.startswith("/token"):
                    status, body = 200, b'{"token":"hostile-token","expires_in":300}'
                elif outer.mode == "basic":
                    status, headers = 401, {"WWW-Authenticate": 'Basic realm="hostile"'}
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"hand me your password"}]}'
                elif outer.mode == "bearer":
                    status = 401
                    headers = {"WWW-Authenticate": f'Bearer realm="{outer.url}/token",service="hostile",scope="x"'}
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"hand me a token"}]}'
                elif self.path.startswith("/blob/") and self.path[6:] in outer.blobs:
                    status, body = 200, outer.blobs[self.path[6:]]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorizations(self) -> list[str]:
        return [a for _, _, a in self.seen if a is not None]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RedirectProxy:
    """A loopback reverse proxy in front of a real registry that sends clients to a :class:`HostileServer`.

    Every request is forwarded to ``upstream`` with its headers (``Host`` included, so the registry's own
    ``Location`` URLs name the proxy). Then: a successful blob GET becomes ``307 Location: <hostile>/blob/<digest>``
    (as registries redirect to a CDN) when ``redirect_blobs``; an upload session's ``Location`` is rewritten to
    the hostile host when ``redirect_uploads``. ``seen`` records ``(method, path)``.
    """

    def __init__(self, upstream: str, hostile: HostileServer) -> None:
        self.upstream = upstream
        self.hostile = hostile
        self.redirect_blobs = True
        self.redirect_uploads = True
        self.seen: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.seen.append((self.command, self.path))
                status, out, data, _ = forward_as_is(self, proxy.upstream, self.path, body)
                is_blob = "/blobs/sha256:" in self.path and "/uploads/" not in self.path
                if proxy.redirect_blobs and self.command == "GET" and is_blob and status == 200:
                    digest = self.path.rsplit("/", 1)[-1]
                    status, data = 307, b""
                    out = [("Location", f"{proxy.hostile.url}/blob/{digest}")]
                if proxy.redirect_uploads:
                    fixed = []
                    for k, v in out:
                        if k.lower() == "location" and "/blobs/uploads/" in v:
                            path = v.split("/v2/", 1)[1]
                            v = f"{proxy.hostile.url}/upload/{path}"
                        fixed.append((k, v))
                    out = fixed
                self.send_response(status)
                for k, v in out:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over plain HTTP on loopback with htpasswd basic auth, user ``carol`` / ``basic-pw-42``."""
    reg = start_registry(tmp_path_factory.mktemp("basic-registry"), user="carol", password="basic-pw-42")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def nodelete_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry as Debian configures it by default: ``storage: delete: enabled: false``."""
    reg = start_registry(tmp_path_factory.mktemp("nodelete-registry"), delete=False)
    yield reg
    reg.stop()


class _QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no log lines; :meth:`read_body` reads a ``Content-Length`` body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes | None:
        """The request's body; a body cut short (the client gave up mid-way) raises ``ConnectionError``."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if body is not None and len(body) < length:
            self.close_connection = True
            raise ConnectionError(f"request body ended after {len(body)} of {length} bytes")
        return body

    def reply(self, status: int, headers: list[tuple[str, str]], data: bytes, length: str | None = None) -> None:
        """Send the answer; ``length`` is the Content-Length to claim (a HEAD's is the GET's)."""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", length if length is not None else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def forward_as_is(
    handler: BaseHTTPRequestHandler, upstream: str, target: str, body: bytes | None
) -> tuple[int, list[tuple[str, str]], bytes, str | None]:
    """Send the handler's request to ``upstream`` with its headers as they came (``Host`` included); returns the
    status, the headers without hop-by-hop ones, the body and the upstream's Content-Length."""
    host, port = upstream.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest(handler.command, target, skip_host=True, skip_accept_encoding=True)
    for k, v in handler.headers.items():
        if k.lower() != "connection":
            conn.putheader(k, v)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    hop = ("connection", "transfer-encoding", "content-length")
    return (
        resp.status,
        [(k, v) for k, v in resp.getheaders() if k.lower() not in hop],
        data,
        resp.getheader("Content-Length"),
    )


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A threaded loopback server for ``handler`` on a free port, serving in a daemon thread; and its host."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


class RecordingProxy:
    """A loopback reverse proxy in front of a registry that records every request, headers included.

    ``Host`` is forwarded as sent, so the registry's ``Location`` URLs name the proxy and every request of a
    client stays visible here. ``seen`` holds ``(method, path, headers)``. With ``paginate_tags`` it answers
    ``GET /v2/<repo>/tags/list?n=N[&last=T]`` a page at a time with a ``Link: <...>; rel="next"`` header, as
    distribution 3, Harbor and GHCR do (Debian's distribution 2.8 ignores ``n`` for tags).
    """

    def __init__(self, upstream: str, *, paginate_tags: bool = False) -> None:
        self.upstream = upstream
        self.paginate_tags = paginate_tags
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(_QuietHandler):
            def _forward(self) -> None:
                with proxy._lock:
                    proxy.seen.append((self.command, self.path, dict(self.headers.items())))
                try:
                    body = self.read_body()
                except ConnectionError:
                    return  # not forwarded: the registry never sees a half upload from us

                split = urlsplit(self.path)
                query = parse_qs(split.query)
                page = proxy.paginate_tags and split.path.endswith("/tags/list") and "n" in query
                target = split.path if page else self.path
                status, out, data, length = forward_as_is(self, proxy.upstream, target, body)
                if page and status == 200:
                    doc = json.loads(data)
                    tags = sorted(doc.get("tags") or [])
                    n, last = int(query["n"][0]), query.get("last", [""])[0]
                    rest = [t for t in tags if t > last]
                    doc["tags"] = rest[:n]
                    data = json.dumps(doc).encode()
                    if len(rest) > n:
                        link = f'<{split.path}?{urlencode({"n": n, "last": rest[n - 1]})}>; rel="next"'
                        out.append(("Link", link))
                self.reply(status, out, data, length if self.command == "HEAD" else None)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server, self.host = _serve(Handler)

    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(m, p) for m, p, _ in self.seen]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------- podman


@pytest.fixture
def podman_vfs() -> Iterator[PodmanCommand]:
    """``podman --root R --runroot RR --storage-driver vfs``, private to the test. The directories are short ones
    under /tmp: podman refuses a runroot longer than 50 characters (pytest's temp paths often are)."""
    podman = require_tool("podman")
    d = Path(tempfile.mkdtemp(prefix="imgcore-pod-", dir="/tmp"))
    cmd = PodmanCommand([podman, "--root", str(d / "root"), "--runroot", str(d / "run"), "--storage-driver", "vfs"], d)
    try:
        yield cmd
    finally:
        shutil.rmtree(d, ignore_errors=True)
        for link in cmd.links:
            link.unlink(missing_ok=True)


class PodmanCommand(list[str]):
    """podman's command line (a list) and its private directory."""

    def __init__(self, argv: list[str], directory: Path) -> None:
        super().__init__(argv)
        self.directory = directory
        self.links: list[Path] = []

    def oci(self, root: Path, ref: str) -> str:
        """``oci:<root>:<ref>`` through a lowercase path: podman names what it pulls from an ``oci:`` layout after
        the layout's path and refuses one with capitals (CI's temporary directories have them)."""
        # every component must be a valid lowercase name component: not mkdtemp's (it may end in "_")
        links = Path("/tmp/imgcore-podman-oci")
        links.mkdir(exist_ok=True)
        link = links / f"layout-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
        if not link.is_symlink():
            link.symlink_to(root)
            self.links.append(link)
        return f"oci:{link}:{ref}"
