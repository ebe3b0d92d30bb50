"""The README's main job: the seed's tomcat scenario, end to end, in a fresh store.

1. a small base OS image is imported from a rootfs tarball made here (busybox for the shell tools);
2. a "tomcat" image is built on it the docker way: create a container, add files inside it, commit with -c;
3. the seed's worked example: create a container from tomcat, ``cp -r webapps.dist/* webapps`` inside it,
   ``commit -m="newtomcat" -a="xxx" <id> new_tomcat:1.0``;
4. ``images``, ``history`` and ``df`` show the new image beside its base and the base layer stored once.

Every step is the ``imgcore`` command a user would type, printed before it runs.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

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
)
WEBAPPS = {
    "ROOT/index.jsp": "<html><body><h1>Apache Tomcat</h1><p>If you're seeing this, you've installed Tomcat.</p>"
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
            out = subprocess.run(["file", "-b", str(p)], capture_output=True, text=True, check=False).stdout
            if "statically linked" in out or "static-pie" in out or not shutil.which("file"):
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


def run(root: str | os.PathLike[str] | None = None) -> int:
    """Runs the demo in ``root`` (a new temporary directory when None); returns a process exit code."""
    work = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="imgcore-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    store_root = work / "store"

    def imgcore(*args: str, capture: bool = False, shown: str | None = None) -> str:
        print(f"\n$ imgcore {shown or shlex.join(args)}", flush=True)
        cmd = [sys.executable, "-m", "imgcore", "--root", str(store_root), *args]
        r = subprocess.run(cmd, capture_output=capture, text=True, check=False)
        if capture:
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
        if r.returncode != 0:
            raise SystemExit(f"demo: `imgcore {shlex.join(args)}` failed with exit code {r.returncode}")
        return r.stdout if capture else ""

    print(f"# imgcore demo: store {store_root} (an OCI image layout)")
    rootfs = work / "mini-os.tar.gz"
    _base_rootfs_tar(rootfs)

    print("\n# 1. a base OS image, imported from a rootfs tarball")
    imgcore("import", "-m", "busybox rootfs", str(rootfs), "mini-os:1.0")

    print("\n# 2. a tomcat image built on it: a container, files added inside it, a commit")
    imgcore("create", "--name", "build-tomcat", "mini-os:1.0")
    mount = Path(imgcore("mount", "build-tomcat", capture=True).strip())
    tomcat = mount / "usr" / "local" / "tomcat"
    for rel, text in WEBAPPS.items():
        path = tomcat / "webapps.dist" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"# (the demo writes {len(WEBAPPS)} files under {tomcat}/webapps.dist, as a buildah-mount user would)")
    imgcore(
        "exec",
        "build-tomcat",
        "--",
        "/bin/sh",
        "-c",
        "mkdir -p /usr/local/tomcat/webapps /usr/local/tomcat/bin && "
        "printf '#!/bin/sh\\necho Tomcat started\\n' > /usr/local/tomcat/bin/catalina.sh && "
        "chmod 755 /usr/local/tomcat/bin/catalina.sh",
    )
    imgcore(
        "commit",
        "-c",
        "WORKDIR /usr/local/tomcat",
        "-c",
        'CMD ["catalina.sh", "run"]',
        "-c",
        "ENV CATALINA_HOME=/usr/local/tomcat",
        "-c",
        "EXPOSE 8080",
        "build-tomcat",
        "tomcat:latest",
    )
    imgcore("rm", "build-tomcat")
    time.sleep(1)

    print("\n# 3. the seed's example: webapps is empty, its content is in webapps.dist")
    cid = imgcore("create", "tomcat", capture=True).strip()
    short = cid[:12]
    imgcore("exec", short, "--", "/bin/sh", "-c", "ls /usr/local/tomcat/webapps | wc -l")
    imgcore("exec", short, "--", "/bin/sh", "-c", "cp -r /usr/local/tomcat/webapps.dist/* /usr/local/tomcat/webapps")
    imgcore("diff", short)
    # What the shell passes for `-m="newtomcat" -a="xxx"` (quotes removed), exactly as the seed types it.
    imgcore(
        "commit",
        "-m=newtomcat",
        "-a=xxx",
        short,
        "new_tomcat:1.0",
        shown=f'commit -m="newtomcat" -a="xxx" {short} new_tomcat:1.0',
    )

    print("\n# 4. the new image beside its base; the base layers are stored once")
    imgcore("images")
    imgcore("history", "new_tomcat:1.0")
    imgcore("df", "-v")

    print("\n# 5. check: a container from new_tomcat:1.0 has the web apps in webapps")
    out = imgcore("create", "new_tomcat:1.0", capture=True).strip()
    imgcore("exec", out[:12], "--", "/bin/sh", "-c", "ls /usr/local/tomcat/webapps")
    imgcore("fsck")
    for line in imgcore("ps", "-q", capture=True).split():
        imgcore("umount", line)
    print(f"\n# done: the store is {store_root}; skopeo and umoci can read it as oci:{store_root}")
    return 0
