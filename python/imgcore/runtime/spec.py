"""The OCI runtime spec (``config.json``) for a container, built from its image's config as docker builds it.

Invariants:

- The process is docker's: ``ENTRYPOINT + CMD``; an ``entrypoint`` override resets the image's CMD, an ``argv``
  override replaces CMD; the environment is ``PATH`` (docker's default unless the image sets one), ``HOSTNAME``,
  ``TERM=xterm`` with a tty, then the image's ``Env``, then the caller's overrides (``NAME`` without ``=`` removes
  the variable), then ``HOME`` from the user's passwd entry when nothing set it.
- Everything read from the rootfs is hostile: ``/etc/passwd`` and ``/etc/group`` are opened with the rootfs as
  the root of path resolution (``openat2(RESOLVE_IN_ROOT)``, else an fd-by-fd walk with ``O_NOFOLLOW`` that
  resolves symlinks against the rootfs), must be regular files, and are read up to :data:`MAX_ACCOUNT_FILE` bytes.
  The working directory is created the same way (``mkdirat`` under a resolved parent, never a path string).
- The security profile is docker's default (moby ``oci/defaults.go`` and its daemon): its 14 capabilities
  (bounding/effective/permitted; inheritable and ambient empty), its masked and read-only paths, pid/ipc/uts/mount
  namespaces plus a network namespace unless ``network="host"``, a device cgroup that denies everything but the
  standard nodes, ``RLIMIT_NOFILE`` 1048576 (capped at imgcore's hard limit), no ``noNewPrivileges``, and a
  seccomp filter denying what docker's default profile leaves out (:func:`seccomp_profile`: a deny-list with
  the same effect on the escape-relevant calls, not docker's full allow-list).
- Nothing runtime-made lands in the rootfs except these paths, which a diff/commit must skip when the image did not
  have them (docker does the same for its init layer):

  * created by us: the working directory (``WorkingDir`` or ``workdir``), like docker -- docker keeps it in the
    container layer, so it is fine for a commit to include it;
  * created by runc as empty mountpoints when missing: the directories ``/proc``, ``/dev``, ``/sys``, the files
    ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` (and ``/etc`` itself), and each volume destination
    (a directory, or an empty file when the volume source is a file) with its missing parents. ``/dev/pts``,
    ``/dev/shm``, ``/dev/mqueue``, ``/sys/fs/cgroup`` and the device nodes live inside runc's own tmpfs/sysfs
    mounts and never touch the rootfs. :data:`RUNTIME_MOUNTPOINTS` lists the fixed ones;
    :func:`missing_mountpoints` gives, before the start, exactly those a given spec will create in a rootfs.
    When the image has one of these paths as a symlink, runc resolves it inside the rootfs and makes the
    mountpoint at the target instead (never outside the rootfs). The mountpoints stay after the container
    exits (empty files and dirs).

- ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` are bind-mounted from container-private files that
  :func:`write_bundle` writes in CDIR (``CDIR/hosts``, ``CDIR/hostname``, ``CDIR/resolv.conf``); with a private
  network resolv.conf is the host's minus loopback nameservers (docker's rule), with ``network="host"`` the host's.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import ipaddress
import json
import os
import posixpath
import re
import resource
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcore._fs import atomic_write
from imgcore.errors import InvalidArgument

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PATH_ENV",
    "MASKED_PATHS",
    "MAX_ACCOUNT_FILE",
    "NETWORK_MODES",
    "READONLY_PATHS",
    "RUNTIME_MOUNTPOINTS",
    "SECCOMP_DENIED",
    "ExecUser",
    "RunOptions",
    "UserNotFound",
    "Volume",
    "build_spec",
    "lookup_user",
    "missing_mountpoints",
    "mkdir_in_root",
    "open_in_root",
    "parse_volume",
    "read_in_root",
    "resolve_user",
    "seccomp_profile",
    "write_bundle",
]

#: docker's PATH when the image sets none (moby ``oci.DefaultPathEnv``).
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: docker's default capability set (moby ``oci.DefaultCapabilities``).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip

#: docker's masked paths (files under /dev/null, directories under an empty read-only tmpfs; runc skips absent ones).
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)  # fmt: skip

#: docker's read-only paths.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

#: Paths runc creates in the rootfs (as empty dirs/files) when the image lacks them; volumes add their destinations.
RUNTIME_MOUNTPOINTS = ("/proc", "/dev", "/sys", "/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")

#: Cap on /etc/passwd and /etc/group read from an image.
MAX_ACCOUNT_FILE = 4 * 1024 * 1024

#: ``bridge``/``default``/``private``: a private network namespace (only ``lo`` for now); ``none``: the same;
#: ``host``: the host's network namespace.
NETWORK_MODES = ("bridge", "default", "private", "none", "host")

_MAX_ID = 2**31 - 1
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # runc's rule for ids (it names the cgroup too)
_NOFILE = 1048576
_SHM_SIZE = 64 * 1024 * 1024

_HOSTS_PRIVATE = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n"
    "ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)
_DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")  # docker's fallback when no usable nameserver is left
_PRIVATE_FILES = {"/etc/hosts": "hosts", "/etc/hostname": "hostname", "/etc/resolv.conf": "resolv.conf"}


class UserNotFound(InvalidArgument, LookupError):
    """The image has no such user or group (docker: ``unable to find user x: no matching entries in passwd file``)."""


# --------------------------------------------------------------------------------------------- confined access

_SYS_OPENAT2 = 437  # the same number on every architecture (the unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_have_openat2: bool | None = None  # None: not tried yet


def _openat2_in_root(rootfd: int, unsafe_path: str, flags: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    path = os.fsencode(unsafe_path or ".")
    for _ in range(16):  # EAGAIN: a concurrent rename in the tree; the kernel asks us to retry
        fd = int(_libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(rootfd), ctypes.c_char_p(path),
                               ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))  # fmt: skip
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), unsafe_path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), unsafe_path)


def _walk_in_root(rootfd: int, unsafe_path: str, flags: int) -> int:
    """openat2(RESOLVE_IN_ROOT) by hand: one component at a time with O_NOFOLLOW, symlinks resolved against root."""
    parts = [p for p in unsafe_path.split("/") if p not in ("", ".")]
    stack = [os.dup(rootfd)]
    links = 0
    try:
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            cur = stack[-1]
            st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), unsafe_path)
                target = os.readlink(comp, dir_fd=cur)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if not parts:
                # O_NOFOLLOW: if the entry was swapped for a symlink since the lstat, this fails (ELOOP).
                return os.open(comp, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            stack.append(os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur))
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def _open_rootfd(rootfs: Path) -> int:
    return os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_in_root(
    rootfs: Path | int, unsafe_path: str, flags: int = os.O_RDONLY, *, use_openat2: bool | None = None
) -> int:
    """An fd for ``unsafe_path`` resolved with ``rootfs`` as ``/`` (symlinks and ``..`` cannot leave it).

    ``rootfs`` is a path or an open directory fd. openat2 is used when the kernel has it (``use_openat2=None``);
    ``False`` forces the portable walk (the tests run both). Raises ``OSError`` (``FileNotFoundError``, ...).
    """
    global _have_openat2
    rootfd = rootfs if isinstance(rootfs, int) else _open_rootfd(rootfs)
    try:
        want = _have_openat2 is not False if use_openat2 is None else use_openat2
        if want:
            try:
                fd = _openat2_in_root(rootfd, unsafe_path, flags)
                _have_openat2 = True
                return fd
            except OSError as e:
                if e.errno not in (errno.ENOSYS, errno.EPERM) or use_openat2:  # EPERM: a seccomp filter
                    raise
                _have_openat2 = False
        return _walk_in_root(rootfd, unsafe_path, flags)
    finally:
        if not isinstance(rootfs, int):
            os.close(rootfd)


def read_in_root(rootfs: Path, unsafe_path: str, limit: int, *, use_openat2: bool | None = None) -> bytes | None:
    """The bytes of regular file ``unsafe_path`` inside ``rootfs`` (confined), None if absent; at most ``limit``.

    A FIFO, device, socket or directory there raises :class:`InvalidArgument` (O_NONBLOCK: a FIFO cannot hang us).
    """
    try:
        fd = open_in_root(rootfs, unsafe_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK, use_openat2=use_openat2)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InvalidArgument(f"{rootfs}: {unsafe_path} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"{rootfs}: {unsafe_path} is larger than {limit} bytes")
    return data


def mkdir_in_root(rootfs: Path, unsafe_path: str, mode: int = 0o755, *, use_openat2: bool | None = None) -> bool:
    """Creates directory ``unsafe_path`` and its missing parents inside ``rootfs``, confined; True if it made any.

    Existing components may be symlinks (resolved against the rootfs); a dangling symlink or a non-directory on
    the way raises :class:`InvalidArgument`.
    """
    parts = [p for p in posixpath.normpath("/" + unsafe_path).split("/") if p]
    made = False
    rootfd = _open_rootfd(rootfs)
    try:
        for i in range(len(parts)):
            prefix = "/".join(parts[: i + 1])
            try:
                os.close(open_in_root(rootfd, prefix, os.O_PATH | os.O_DIRECTORY, use_openat2=use_openat2))
                continue
            except NotADirectoryError:
                raise InvalidArgument(f"{rootfs}: /{prefix} is not a directory") from None
            except FileNotFoundError:
                pass
            parent = open_in_root(rootfd, "/".join(parts[:i]), os.O_PATH | os.O_DIRECTORY, use_openat2=use_openat2)
            try:
                os.mkdir(parts[i], mode, dir_fd=parent)
            except FileExistsError:
                raise InvalidArgument(f"{rootfs}: /{prefix} is a dangling symlink") from None
            finally:
                os.close(parent)
            made = True
    finally:
        os.close(rootfd)
    return made


# --------------------------------------------------------------------------------------------- users


@dataclass(frozen=True)
class ExecUser:
    """The resolved identity of the container process."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str = ""


def _parse_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    if value > _MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}: {text}")
    return value


def _entry_id(text: str) -> int | None:
    """An id field of a passwd/group line; None when it is not a valid id (the line is then ignored)."""
    return int(text) if text.isdigit() and int(text) <= _MAX_ID else None


def _account_lines(data: bytes | None, nfields: int) -> Iterable[list[str]]:
    for raw in (data or b"").decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        yield fields + [""] * (nfields - len(fields))


def lookup_user(rootfs: Path, user: str | None, *, use_openat2: bool | None = None) -> ExecUser:
    """Resolves docker's ``--user`` (``name|uid[:group|gid]``; empty = root) with the rootfs's passwd and group.

    The rules are docker's (moby ``user.GetExecUser``): a name must exist in /etc/passwd, a number need not (then
    gid 0 and home ``/``); a group name must exist in /etc/group, a number need not; without an explicit group
    the user's supplementary groups are the /etc/group entries that list the user.
    """
    spec = (user or "").strip()
    user_arg, _, group_arg = spec.partition(":")
    passwd = read_in_root(rootfs, "/etc/passwd", MAX_ACCOUNT_FILE, use_openat2=use_openat2)
    group = read_in_root(rootfs, "/etc/group", MAX_ACCOUNT_FILE, use_openat2=use_openat2)

    uid, gid, home, name, have_user = 0, 0, "/", "", False
    want_uid = _parse_id(user_arg) if user_arg else 0
    for f in _account_lines(passwd, 7):
        entry_uid = _entry_id(f[2])
        if (user_arg and f[0] == user_arg) or (want_uid is not None and entry_uid == want_uid):
            if entry_uid is None:
                continue
            uid, gid, home, name, have_user = entry_uid, _entry_id(f[3]) or 0, f[5] or "/", f[0], True
            break
    if not have_user:
        if want_uid is None:
            raise UserNotFound(f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = want_uid

    extra: list[int] = []
    if group_arg:
        want_gid = _parse_id(group_arg)
        for f in _account_lines(group, 4):
            entry_gid = _entry_id(f[2])
            if entry_gid is not None and (f[0] == group_arg or entry_gid == want_gid):
                gid = entry_gid
                break
        else:
            if want_gid is None:
                raise UserNotFound(f"unable to find group {group_arg}: no matching entries in group file")
            gid = want_gid
    elif have_user:
        for f in _account_lines(group, 4):
            if name in f[3].split(","):
                g = _entry_id(f[2])
                if g is not None and g not in extra:
                    extra.append(g)
    return ExecUser(uid, gid, tuple(extra), home, name)


def resolve_user(rootfs: Path, spec: str | None) -> tuple[int, int, tuple[int, ...]]:
    """``(uid, gid, additional_gids)`` for docker's ``--user`` value ``spec`` (see :func:`lookup_user`)."""
    u = lookup_user(rootfs, spec)
    return u.uid, u.gid, u.additional_gids


# --------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Volume:
    """A bind mount: an absolute host ``source`` onto ``destination`` in the container."""

    source: str
    destination: str
    read_only: bool = False


def parse_volume(text: str) -> Volume:
    """``SRC:DST[:ro|rw]`` (docker's ``-v`` for binds). SRC must be an absolute path that exists.

    docker creates a missing SRC directory on the host; imgcore refuses (a typo must not create host dirs).
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: {text!r} (want SRC:DST[:ro])")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    if any(o not in ("ro", "rw", "z", "Z") for o in opts):
        raise InvalidArgument(f"invalid volume specification: {text!r}: unknown mode {parts[2]!r}")
    if not src.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: {text!r}: named volumes are not supported, SRC must "
                              "be an absolute host path")  # fmt: skip
    if not dst.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: {text!r}: DST must be an absolute path")
    dst = posixpath.normpath(dst)
    if dst == "/":
        raise InvalidArgument(f"invalid volume specification: {text!r}: DST cannot be /")
    if not Path(src).exists():
        raise InvalidArgument(f"invalid volume specification: {text!r}: {src} does not exist on the host")
    return Volume(os.path.normpath(src), dst, "ro" in opts)


@dataclass(frozen=True)
class RunOptions:
    """What ``run``/``create`` asks for on top of the image config (None = take the image's value).

    ``argv`` replaces CMD; ``entrypoint`` replaces ENTRYPOINT and resets CMD (``()`` is ``--entrypoint ""``);
    ``env`` entries are ``NAME=value`` (or ``NAME`` to remove); ``volumes`` are :class:`Volume` or ``SRC:DST[:ro]``;
    ``network`` is one of :data:`NETWORK_MODES`; ``container_id`` names the cgroup and gives the default hostname
    (its first 12 characters). ``open_stdin`` does not change the spec; the monitor uses it.
    """

    argv: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    open_stdin: bool = False
    hostname: str | None = None
    volumes: tuple[Volume | str, ...] = ()
    network: str = "bridge"
    container_id: str = ""
    extra_annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("argv", "entrypoint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "env", tuple(self.env))
        object.__setattr__(self, "volumes", tuple(self.volumes))
        if self.container_id and not _ID_RE.match(self.container_id):
            raise InvalidArgument(f"container id {self.container_id!r}: must match [A-Za-z0-9][A-Za-z0-9_.-]*")
        if self.network not in NETWORK_MODES:
            raise InvalidArgument(f"network {self.network!r}: must be one of {', '.join(NETWORK_MODES)}")


# --------------------------------------------------------------------------------------------- the spec


def _image_section(image_config: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = image_config.get("config")
    return inner if isinstance(inner, Mapping) else image_config


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"image config: {what} must be a list of strings")
    return list(value)


def merge_env(base: Iterable[str], overrides: Iterable[str]) -> list[str]:
    """moby's ``ReplaceOrAppendEnvValues``: replace ``NAME=`` in place or append; a bare ``NAME`` removes it."""
    out = list(base)
    for item in overrides:
        name = item.split("=", 1)[0]
        idx = next((i for i, e in enumerate(out) if e.split("=", 1)[0] == name), None)
        if "=" not in item:
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(item)
        else:
            out[idx] = item
    return out


def _process_args(image: Mapping[str, Any], opts: RunOptions) -> list[str]:
    if opts.entrypoint is not None:
        entrypoint = list(opts.entrypoint)
        cmd = list(opts.argv) if opts.argv else []
    else:
        entrypoint = _str_list(image.get("Entrypoint"), "Entrypoint")
        cmd = list(opts.argv) if opts.argv else _str_list(image.get("Cmd"), "Cmd")
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("no command specified")
    return args


def _hostname(opts: RunOptions) -> str:
    if opts.hostname:
        name = opts.hostname
    elif opts.network == "host":
        name = socket.gethostname()
    else:
        name = opts.container_id[:12] or "imgcore"
    if len(name) > 64 or any(c in name for c in "/ \t\n\x00"):
        raise InvalidArgument(f"invalid hostname {name!r}")
    return name


def _bind(source: str, destination: str, *, read_only: bool = False) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["rbind", "rprivate"] + (["ro"] if read_only else [])}  # fmt: skip


def _mounts(volumes: Sequence[Volume]) -> list[dict[str, Any]]:
    base = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={_SHM_SIZE}"]},
    ]  # fmt: skip
    # Placeholders relative to the bundle (runc resolves them from there); write_bundle makes them absolute.
    base += [_bind(f"../{name}", dest) for dest, name in _PRIVATE_FILES.items()]
    user_dests = {v.destination for v in volumes}
    mounts = [m for m in base if m["destination"] not in user_dests]  # a -v onto /etc/hosts wins, as in docker
    mounts += [_bind(v.source, v.destination, read_only=v.read_only) for v in volumes]
    # docker sorts by depth so a parent is mounted before what goes inside it (sort is stable).
    mounts.sort(key=lambda m: len([p for p in str(m["destination"]).split("/") if p]))
    return mounts


def _device_rules() -> list[dict[str, Any]]:
    def allow(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        return rule

    return [
        {"allow": False, "access": "rwm"},
        # docker denies fuse explicitly; it goes before the wildcards because cgroup v1 cannot punch a hole in one.
        {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        allow("c", None, None, "m"),  # mknod of any node is allowed (CAP_MKNOD), opening it is not
        allow("b", None, None, "m"),
        allow("c", 1, 3),  # null
        allow("c", 1, 5),  # zero
        allow("c", 1, 7),  # full
        allow("c", 1, 8),  # random
        allow("c", 1, 9),  # urandom
        allow("c", 5, 0),  # tty
        allow("c", 5, 1),  # console
        allow("c", 5, 2),  # ptmx
        allow("c", 136, None),  # pts/*
    ]


def _masked_paths() -> list[str]:
    paths = list(MASKED_PATHS)
    # docker also masks every cpu's thermal_throttle (present on bare-metal Intel hosts).
    with contextlib.suppress(OSError):
        for entry in sorted(Path("/sys/devices/system/cpu").iterdir()):
            if entry.name.startswith("cpu") and entry.name[3:].isdigit() and (entry / "thermal_throttle").is_dir():
                paths.append(str(entry / "thermal_throttle"))
    return paths


def _nofile() -> int:
    """docker's containers get 1048576 open files (dockerd's limit, inherited); never above our own hard limit,
    which an unprivileged-in-practice root (no CAP_SYS_RESOURCE) cannot raise."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return _NOFILE if hard == resource.RLIM_INFINITY else min(_NOFILE, hard)


def _workdir(image: Mapping[str, Any], opts: RunOptions) -> str:
    wd = opts.workdir if opts.workdir is not None else image.get("WorkingDir") or "/"
    if not isinstance(wd, str) or not wd.startswith("/"):
        raise InvalidArgument(f"the working directory {wd!r} is invalid, it needs to be an absolute path")
    return posixpath.normpath(wd)


def build_spec(
    image_config: Mapping[str, Any], rootfs: Path, opts: RunOptions, *, create_workdir: bool = True
) -> dict[str, Any]:
    """The OCI runtime spec for a container of an image (``image_config``: the image config JSON, or its
    ``config`` section) whose root filesystem is ``rootfs`` (absolute).

    Reads /etc/passwd and /etc/group from ``rootfs`` (confined) and creates the working directory there when it is
    missing (``create_workdir``), as docker does. The three private files are bind-mounted from placeholders
    relative to the bundle; :func:`write_bundle` writes them and makes the sources absolute.
    Raises :class:`InvalidArgument` (bad options, no command) and :class:`UserNotFound`.
    """
    image = _image_section(image_config)
    rootfs = Path(rootfs)
    if not rootfs.is_absolute():
        raise InvalidArgument(f"rootfs {rootfs}: must be an absolute path")
    args = _process_args(image, opts)
    cwd = _workdir(image, opts)
    user = lookup_user(rootfs, opts.user if opts.user is not None else image.get("User") or "")
    hostname = _hostname(opts)
    volumes = [v if isinstance(v, Volume) else parse_volume(v) for v in opts.volumes]

    env = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if opts.tty else [])
    env = merge_env(env, _str_list(image.get("Env"), "Env"))
    env = merge_env(env, opts.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")

    if create_workdir and cwd != "/":
        mkdir_in_root(rootfs, cwd)

    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if opts.network != "host":
        namespaces.append({"type": "network"})  # runc brings up lo in a new network namespace
    caps = list(DEFAULT_CAPABILITIES)
    annotations = {"org.imgcore.network": opts.network, **opts.extra_annotations}
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": _masked_paths(),
        "readonlyPaths": list(READONLY_PATHS),
        "resources": {"devices": _device_rules()},
        "seccomp": seccomp_profile(),
    }
    if opts.container_id:
        linux["cgroupsPath"] = f"/imgcore/{opts.container_id}"
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.tty,
            "user": {"uid": user.uid, "gid": user.gid, **({"additionalGids": list(user.additional_gids)}
                                                           if user.additional_gids else {})},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _nofile(), "soft": _nofile()}],
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": _mounts(volumes),
        "annotations": annotations,
        "linux": linux,
    }  # fmt: skip


def missing_mountpoints(rootfs: Path, spec: Mapping[str, Any]) -> list[str]:
    """The paths the runtime will create in ``rootfs`` for ``spec``'s mounts, because they are missing now.

    Call it after :func:`build_spec` and before the container starts; after it ran, a diff/commit skips these
    paths when they are still what the runtime made (an empty directory or an empty file), as docker skips its
    init layer. Only mount destinations not inside another mount count (``/dev/pts`` lives in ``/dev``'s tmpfs).
    The walk does not follow symlinks: a destination behind a symlink in the image is created at the link's
    target inside the rootfs, which is not listed (the image put the link there; its target is the image's).
    """
    dests = sorted({posixpath.normpath(str(m["destination"])) for m in spec.get("mounts", [])})
    top = [d for d in dests if not any(o != d and (d + "/").startswith(o.rstrip("/") + "/") for o in dests)]
    missing: list[str] = []
    rootfd = _open_rootfd(Path(rootfs))
    try:
        for dest in top:
            parts = [p for p in dest.split("/") if p]
            fd = os.dup(rootfd)
            try:
                for i, comp in enumerate(parts):
                    try:
                        st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        missing += ["/" + "/".join(parts[: j + 1]) for j in range(i, len(parts))]
                        break
                    if not stat.S_ISDIR(st.st_mode) or i == len(parts) - 1:
                        break
                    nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                    os.close(fd)
                    fd = nfd
            finally:
                os.close(fd)
    finally:
        os.close(rootfd)
    return sorted(set(missing))


# --------------------------------------------------------------------------------------------- seccomp

#: Syscalls docker's default seccomp profile leaves out of its allow-list for a container with the default
#: capabilities (moby ``profiles/seccomp/default.json``): module and kexec loading, the keyring, bpf and perf,
#: mounting (old and new API), namespaces (unshare/setns), clocks, swap, reboot, quotas, handles (the "shocker"
#: escape), userfaultfd, io_uring, NUMA policy, legacy calls. Names unknown to an architecture are skipped by runc.
SECCOMP_DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
    "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount", "move_pages", "name_to_handle_at",
    "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "query_module", "quotactl",
    "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon",
    "syslog", "sysfs", "_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old",
)  # fmt: skip

# clone(2) flags that make namespaces; docker refuses clone with any of them (CLONE_NEWNS .. CLONE_NEWNET).
_CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_SECCOMP_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def seccomp_profile() -> dict[str, Any]:
    """A seccomp filter with the effect of docker's default profile on the calls that matter for escapes.

    docker's profile is an allow-list of ~350 calls; this is the deny-list of what it leaves out (EPERM, as
    docker), plus its rules that ``clone`` may not create namespaces and ``clone3`` reports ENOSYS (so libc
    falls back to ``clone``, where the flags can be checked). Everything else is allowed.
    """
    rules: list[dict[str, Any]] = [
        {"names": list(SECCOMP_DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    rules += [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM,
               "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
              for flag in _CLONE_NS_FLAGS]  # fmt: skip
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    arches = _SECCOMP_ARCHES.get(os.uname().machine)
    if arches:
        profile["architectures"] = arches
    return profile


# --------------------------------------------------------------------------------------------- the bundle


def _host_file(path: str, limit: int = 1024 * 1024) -> str:
    try:
        with Path(path).open("rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def resolv_conf(host_network: bool, *, host_text: str | None = None) -> str:
    """The container's resolv.conf: the host's; with a private network minus loopback nameservers (docker's rule:
    they would point into the container). When that leaves none, systemd-resolved's upstream file is tried, then
    docker's public defaults."""
    text = _host_file("/etc/resolv.conf") if host_text is None else host_text
    if host_network:
        return text

    def filtered(t: str) -> tuple[list[str], int]:
        lines, servers = [], 0
        for line in t.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                if _is_loopback(fields[1]):
                    continue
                servers += 1
            lines.append(line)
        return lines, servers

    lines, servers = filtered(text)
    if servers == 0 and host_text is None and "127.0.0.53" in text:
        upstream = _host_file("/run/systemd/resolve/resolv.conf")
        up_lines, up_servers = filtered(upstream)
        if up_servers:
            lines, servers = up_lines, up_servers
    if servers == 0:
        lines += [f"nameserver {ns}" for ns in _DEFAULT_DNS]
    return "\n".join(lines) + "\n"


def _is_host_network(spec: Mapping[str, Any]) -> bool:
    namespaces = spec.get("linux", {}).get("namespaces", [])
    return not any(ns.get("type") == "network" for ns in namespaces)


def write_bundle(cdir: Path, spec: Mapping[str, Any]) -> Path:
    """Writes ``CDIR/bundle/config.json`` and the private ``CDIR/hosts``, ``CDIR/hostname``, ``CDIR/resolv.conf``.

    The spec's binds for ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` are pointed at those files
    (absolute paths). The files are rewritten on every call (docker rewrites them on each start). Returns the
    bundle directory. config.json is mode 0600: it holds the container's environment.
    """
    cdir = Path(cdir)
    bundle = cdir / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    out = copy.deepcopy(dict(spec))
    host_net = _is_host_network(out)
    hostname = str(out.get("hostname") or "")
    contents = {
        "hosts": (_host_file("/etc/hosts") if host_net else _HOSTS_PRIVATE).encode(),
        "hostname": (hostname + "\n").encode(),
        "resolv.conf": resolv_conf(host_net).encode(),
    }
    for name, data in contents.items():
        atomic_write(cdir / name, data, mode=0o644, durable=False)  # rewritten at every start
    for m in out.get("mounts", []):
        private = _PRIVATE_FILES.get(m.get("destination", ""))
        if private is not None and m.get("source") == f"../{private}":
            m["source"] = str((cdir / private).absolute())
    atomic_write(bundle / "config.json", (json.dumps(out, indent=2) + "\n").encode(), mode=0o600, durable=False)
    return bundle
