"""The README's main job: the seed's tomcat scenario, end to end, with a registry and a fresh store.

1. Debian's ``docker-registry`` is started on a loopback port (stopped at the end, whatever happens);
2. a small base OS image is imported from a rootfs tarball made here (busybox for the shell tools), and a
   "tomcat" image is built on it the docker way: a container runs the setup, ``cp`` adds the web apps to
   ``webapps.dist``, ``commit -c`` makes its command busybox httpd serving ``webapps/`` on a loopback port;
3. both are pushed; in a FRESH store ``pull <host>/tomcat`` prints docker's per-layer lines;
4. the seed's worked example: ``run -d`` (runc; ``--network host``, the server is checked with an HTTP request),
   ``exec <id> sh -c 'cp -r webapps.dist/* webapps'`` in the image's WORKDIR, exactly as the seed writes it,
   ``commit -m="newtomcat" -a="xxx" <id> new_tomcat:1.0``;
5. ``images``, ``history`` and ``df -v`` show the new image beside its base and the base layers stored once;
   ``run --rm new_tomcat:1.0 ls webapps`` shows the copied apps.

Every step is the ``imgcore`` command a user would type, printed before it runs. Needs root (runc).
"""

from __future__ import annotations

import io
import os
import shlex
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from imgcore._host import host_env
from imgcore.runtime.host import RuntimeUnavailable, which

__all__ = ["run"]

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = (
    "sh",
    "ls",
    "cp",
    "mkdir",
    "cat",
    "echo",
    "rm",
    "mv",
    "touch",
    "find",
    "chmod",
    "ln",
    "du",
    "wc",
    "head",
    "sed",
    "grep",
    "sleep",
    "env",
    "httpd",
)
WEBAPPS = {
    "ROOT/index.html": "<html><body><h1>Apache Tomcat</h1><p>If you're seeing this, you've installed Tomcat.</p>"
    "</body></html>\n",
    "ROOT/WEB-INF/web.xml": '<?xml version="1.0"?>\n<web-app version="5.0"/>\n',
    "docs/index.html": "<html><body>Tomcat documentation</body></html>\n",
    "examples/index.html": "<html><body>Servlet and JSP examples</body></html>\n",
    "examples/WEB-INF/web.xml": '<?xml version="1.0"?>\n<web-app version="5.0"/>\n',
    "manager/index.jsp": "<html><body>Manager App</body></html>\n",
    "host-manager/index.jsp": "<html><body>Host Manager</body></html>\n",
}


def _busybox() -> Path:
    for c in BUSYBOX_CANDIDATES:
        p = Path(c)
        if p.is_file():
            try:
                file_cmd = which("file")
            except RuntimeUnavailable:
                return p
            out = subprocess.run([file_cmd, "-b", str(p)], capture_output=True, text=True, check=False,
                                 env=host_env()).stdout  # fmt: skip
            if "statically linked" in out or "static-pie" in out:
                return p
    raise SystemExit("demo: needs a static busybox for the image's shell tools: apt-get install -y busybox-static")


def _base_rootfs_tar(dest: Path) -> None:
    """A tiny OS rootfs: busybox with its applets, /etc basics, the usual directories."""
    busybox = _busybox().read_bytes()
    mtime = 1_700_000_000

    def add(tf: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o755, link: str = "") -> None:
        ti = tarfile.TarInfo(name)
        ti.mtime = mtime
        ti.mode = mode
        if link:
            ti.type, ti.linkname = tarfile.SYMTYPE, link
            tf.addfile(ti)
        elif data is None:
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
        else:
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "root", "tmp", "usr", "usr/local", "var", "var/log", "dev", "proc"):
            add(tf, d, mode=0o1777 if d == "tmp" else 0o755)
        add(tf, "bin/busybox", data=busybox)
        for applet in APPLETS:
            add(tf, f"bin/{applet}", link="busybox")
        add(tf, "etc/os-release", data=b'PRETTY_NAME="imgcore demo OS (busybox)"\nID=imgcore-demo\n', mode=0o644)
        add(tf, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644)
        add(tf, "etc/group", data=b"root:x:0:\n", mode=0o644)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"demo: {what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"demo: {what} does not listen on 127.0.0.1:{port}")


def _start_registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's ``docker-registry`` (the distribution server) on a loopback port, storing under ``work``."""
    try:
        binary = which("docker-registry")
    except RuntimeUnavailable:
        raise SystemExit("demo: needs Debian's docker-registry: apt-get install -y docker-registry") from None
    port = _free_port()
    cfg = work / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {work / 'registry'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    with (work / "registry.log").open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=host_env())
    _wait_listening(port, proc, "docker-registry")
    return proc, f"127.0.0.1:{port}"


def _http_get(port: int, path: str) -> tuple[int, str]:
    """``GET http://127.0.0.1:PORT/PATH`` without any proxy: (status, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return int(r.status), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return int(e.code), ""


def run(root: str | os.PathLike[str] | None = None) -> int:
    """Runs the demo in ``root`` (a new temporary directory when None); returns a process exit code."""
    if os.geteuid() != 0:
        raise SystemExit("demo: runs its containers with runc, which needs root")
    work = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="imgcore-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    builder_root = work / "store"
    fresh_root = work / "fresh"

    def imgcore(*args: str, capture: bool = False, shown: str | None = None, store: Path = builder_root) -> str:
        print(f"\n$ imgcore {shown or shlex.join(args)}", flush=True)
        cmd = [sys.executable, "-m", "imgcore", "--root", str(store), *args]
        r = subprocess.run(cmd, capture_output=capture, text=True, check=False, env=dict(os.environ),  # imgcore itself
                           stderr=subprocess.STDOUT if not capture else None)  # fmt: skip
        if capture:
            sys.stdout.write(r.stdout)
            sys.stdout.write(r.stderr or "")
            sys.stdout.flush()
        if r.returncode != 0:
            raise SystemExit(f"demo: `imgcore {shlex.join(args)}` failed with exit code {r.returncode}")
        return r.stdout if capture else ""

    registry, host = _start_registry(work)
    try:
        return _scenario(work, host, imgcore, builder_root, fresh_root)
    finally:
        print(f"\n# stopping the registry (pid {registry.pid})")
        registry.terminate()
        try:
            registry.wait(10)
        except subprocess.TimeoutExpired:
            registry.kill()
            registry.wait()


def _scenario(work: Path, host: str, imgcore: Any, builder_root: Path, fresh_root: Path) -> int:
    port = _free_port()
    print(f"# imgcore demo: build store {builder_root}, registry {host}, fresh store {fresh_root}")
    rootfs = work / "mini-os.tar.gz"
    _base_rootfs_tar(rootfs)

    print("\n# 1. a base OS image, imported from a rootfs tarball")
    imgcore("import", "-m", "busybox rootfs", str(rootfs), "mini-os:1.0")

    print("\n# 2. a tomcat image built on it: a container runs the setup, cp adds the web apps, commit -c")
    imgcore("run", "--name", "build-tomcat", "mini-os:1.0", "/bin/sh", "-c",
            "mkdir -p /usr/local/tomcat/webapps /usr/local/tomcat/bin && "
            "printf '#!/bin/sh\\necho Tomcat started\\n' > /usr/local/tomcat/bin/catalina.sh && "
            "chmod 755 /usr/local/tomcat/bin/catalina.sh")  # fmt: skip
    dist = work / "webapps.dist"
    for rel, text in WEBAPPS.items():
        path = dist / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    imgcore("cp", str(dist), "build-tomcat:/usr/local/tomcat/webapps.dist")
    imgcore(
        "commit",
        "-c", "WORKDIR /usr/local/tomcat",
        "-c", f'CMD ["httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "webapps"]',
        "-c", "ENV CATALINA_HOME=/usr/local/tomcat",
        "-c", "EXPOSE 8080",
        "build-tomcat",
        "tomcat:latest",
    )  # fmt: skip
    imgcore("rm", "build-tomcat")

    print(f"\n# 3. both images to the registry at {host}")
    for name in ("mini-os:1.0", "tomcat:latest"):
        imgcore("tag", name, f"{host}/{name}")
        imgcore("push", f"{host}/{name}")

    print("\n# 4. the seed's workflow in a fresh store: pull, run, exec, commit")
    imgcore("pull", f"{host}/tomcat", store=fresh_root)
    cid = imgcore("run", "-d", "--network", "host", f"{host}/tomcat", capture=True, store=fresh_root).strip()
    short = cid[:12]
    _wait_listening(port, None, "the container's httpd")
    status, _ = _http_get(port, "/ROOT/index.html")
    print(f"# GET http://127.0.0.1:{port}/ROOT/index.html -> {status} (webapps is empty; its content is in "
          "webapps.dist)")  # fmt: skip
    imgcore("ps", store=fresh_root)
    imgcore("exec", short, "sh", "-c", "cp -r webapps.dist/* webapps", store=fresh_root,
            shown=f"exec {short} sh -c 'cp -r webapps.dist/* webapps'")  # fmt: skip
    status, body = _http_get(port, "/ROOT/index.html")
    print(f"# GET http://127.0.0.1:{port}/ROOT/index.html -> {status}: {body.strip()}")
    if status != 200:
        raise SystemExit(f"demo: the container's httpd answered {status} after the copy")
    imgcore("diff", short, store=fresh_root)
    # What the shell passes for `-m="newtomcat" -a="xxx"` (quotes removed), exactly as the seed types it.
    imgcore("commit", "-m=newtomcat", "-a=xxx", short, "new_tomcat:1.0", store=fresh_root,
            shown=f'commit -m="newtomcat" -a="xxx" {short} new_tomcat:1.0')  # fmt: skip

    print("\n# 5. the new image beside its base; the base layers are stored once")
    imgcore("images", store=fresh_root)
    imgcore("history", "new_tomcat:1.0", store=fresh_root)
    imgcore("df", "-v", store=fresh_root)
    # The exec copied webapps.dist into webapps: the same content at two paths, which analyze finds by content.
    imgcore("analyze", "new_tomcat:1.0", store=fresh_root)

    print("\n# 6. check: a container from new_tomcat:1.0 has the web apps in webapps")
    imgcore("run", "--rm", "new_tomcat:1.0", "ls", "webapps", store=fresh_root)
    imgcore("stop", "-t", "1", short, store=fresh_root)  # httpd as pid 1 ignores SIGTERM: SIGKILL after 1 s
    imgcore("ps", "-a", store=fresh_root)
    imgcore("rm", short, store=fresh_root)
    imgcore("fsck", store=fresh_root)
    print(f"\n# done: the stores are {builder_root} and {fresh_root}; skopeo and umoci read them as oci:<dir>")
    return 0
