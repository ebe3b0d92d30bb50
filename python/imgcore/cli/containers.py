"""CLI: create, run, start, stop, kill, restart, wait, logs, exec, attach, pause, unpause, ps, rm, cp, mount,
umount, diff, commit, and ``inspect`` of containers (docker's spelling, flags, output and exit codes).

Exit codes as docker's: ``run`` exits with the container's code, 125 for imgcore's own errors, 126 when the
command cannot be executed, 127 when it is not found; detaching (ctrl+p ctrl+q) prints ``read escape sequence``
on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from imgcore._gotemplate import render_rows
from imgcore._humanize import ago, ellipsis, human_duration
from imgcore.containers.copy import copy_from_container, copy_to_container
from imgcore.containers.manager import Container, Containers, image_of, rootless
from imgcore.errors import ImgcoreError, InvalidArgument, InvalidStateFile
from imgcore.runtime import attach as attach_mod
from imgcore.runtime import logs as logs_mod
from imgcore.runtime._state import ContainerStartFailed, Detached, State, parse_nano
from imgcore.runtime.spec import RunOptions, parse_volume
from imgcore.store import ContentStore

__all__ = ["inspect_any_container", "inspect_container", "register"]

RUN_ERROR = 125  # docker: the error is imgcore's own, not the container's


def _ctx(args: argparse.Namespace) -> tuple[ContentStore, Containers]:
    store = ContentStore(args.root)
    return store, Containers(store)


def _eq_value(value: str | None) -> str | None:
    """``-m="msg"`` reaches us as ``=msg`` (the shell removed the quotes): docker stores ``msg``."""
    return value[1:] if value is not None and value.startswith("=") else value


def _env(values: Sequence[str] | None) -> list[str]:
    """docker's ``-e``: ``K=V`` as given; a bare ``K`` takes this process's value, and is dropped when unset."""
    out = []
    for v in values or ():
        if "=" in v:
            out.append(v)
        elif v in os.environ:
            out.append(f"{v}={os.environ[v]}")
    return out


def _run_options(args: argparse.Namespace) -> RunOptions:
    argv = list(args.argv or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    entry = None
    if args.entrypoint is not None:
        entry = (args.entrypoint,) if args.entrypoint else ()
    return RunOptions(
        argv=tuple(argv) or None,
        entrypoint=entry,
        env=tuple(_env(args.env)),
        workdir=args.workdir,
        user=args.user,
        tty=args.tty,
        open_stdin=args.interactive,
        hostname=args.hostname,
        volumes=tuple(parse_volume(v) for v in args.volume or ()),
        network=args.network,
    )


def _create(args: argparse.Namespace, cs: Containers, *, auto_remove: bool = False) -> Container:
    c = cs.create(args.image, name=args.name, driver=args.driver, options=_run_options(args),
                  runtime=args.runtime, auto_remove=auto_remove)  # fmt: skip
    for path, why in c.skipped:
        print(f"imgcore: skipped {path} from the image's layers: {why}", file=sys.stderr)
    cs.mount(c)
    return c


def cmd_create(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    print(_create(args, cs).id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    try:
        c = _create(args, cs, auto_remove=args.rm)
    except ImgcoreError as e:
        print(f"imgcore: {e}", file=sys.stderr)
        return RUN_ERROR
    try:
        try:
            if rootless() and not args.detach:  # bubblewrap, in the foreground
                return cs.run_unprivileged(c, warn=lambda w: print(f"imgcore: {w}", file=sys.stderr)).returncode
            if args.rm and not (args.detach or args.interactive or args.tty):  # lives as long as the command
                return cs.run_foreground(c)
            cs.start(c, attach_first=not args.detach)
        except ContainerStartFailed as e:
            if getattr(e, "stage", "") != "run":  # runc run, in the foreground, said it on our stderr already
                print(f"imgcore: Error response from daemon: {e}", file=sys.stderr)
            return int(getattr(e, "exit_status", RUN_ERROR))
        except ImgcoreError as e:
            print(f"imgcore: {e}", file=sys.stderr)
            return RUN_ERROR
        if args.detach:
            print(c.id)
            return 0
        try:
            return attach_mod.attach(c.path, stdin=args.interactive, tty=args.tty, stdin_once=True)
        except Detached as e:
            print(str(e), file=sys.stderr)
            return 1
    finally:
        if args.rm and not args.detach and not cs.state(c).running:
            cs.remove(c, force=True)


def cmd_start(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    rc = 0
    for name in args.containers:
        c = cs.get(name)
        try:
            st = cs.start(c, attach_first=args.attach)
        except ContainerStartFailed as e:
            print(f"Error response from daemon: {e}", file=sys.stderr)
            rc = 1
            continue
        if args.attach:
            try:
                return attach_mod.attach(c.path, stdin=args.interactive, tty=st.tty, stdin_once=True)
            except Detached as e:
                print(str(e), file=sys.stderr)
                return 1
        print(name)
    return rc


def _each(args: argparse.Namespace, action: Any) -> int:
    _, cs = _ctx(args)
    rc = 0
    for name in args.containers:
        try:
            action(cs, cs.get(name))
            print(name)
        except ImgcoreError as e:
            print(f"Error response from daemon: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_stop(args: argparse.Namespace) -> int:
    return _each(args, lambda cs, c: cs.stop(c, args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    return _each(args, lambda cs, c: cs.restart(c, args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    return _each(args, lambda cs, c: cs.kill(c, args.signal))


def cmd_pause(args: argparse.Namespace) -> int:
    return _each(args, lambda cs, c: cs.pause(c))


def cmd_unpause(args: argparse.Namespace) -> int:
    return _each(args, lambda cs, c: cs.unpause(c))


def cmd_wait(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    rc = 0
    for name in args.containers:
        try:
            print(cs.wait(cs.get(name)), flush=True)
        except ImgcoreError as e:
            print(f"Error response from daemon: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_logs(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    c = cs.get(args.container)
    tail = None if args.tail in (None, "all") else int(args.tail)
    logs_mod.read(c.path, follow=args.follow, tail=tail, timestamps=args.timestamps, since=args.since,
                  until=args.until)  # fmt: skip
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    c = cs.get(args.container)
    st = cs.state(c)
    try:
        return attach_mod.attach(c.path, stdin=not args.no_stdin and st.open_stdin, tty=st.tty,
                                 detach_keys=args.detach_keys)  # fmt: skip
    except Detached as e:
        print(str(e), file=sys.stderr)
        return 1


def _status(st: State, now: _dt.datetime | None = None) -> str:
    """docker ps's STATUS: ``Created``, ``Up 5 seconds``, ``Up 2 minutes (Paused)``, ``Exited (0) 3 seconds ago``."""
    now_s = (now or _dt.datetime.now(_dt.UTC)).timestamp()
    if st.status in ("running", "paused"):
        up = "Up " + human_duration(now_s - parse_nano(st.started_at) / 1e9) if st.started_at else "Up"
        return up + (" (Paused)" if st.status == "paused" else "")
    if st.status == "exited":
        when = human_duration(now_s - parse_nano(st.finished_at) / 1e9) + " ago" if st.finished_at else ""
        return f"Exited ({st.exit_code if st.exit_code is not None else 0}) {when}".rstrip()
    return "Created"


def _ps_matches(c: Container, st: State, filters: Sequence[str]) -> bool:
    """docker's ``ps --filter``: status, exited, name (a regular expression searched in the name, as docker's)
    and id (a prefix); several values of one key are alternatives, different keys must all match."""
    wanted: dict[str, set[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {f}")
        wanted.setdefault(key, set()).add(value)
    for key, values in wanted.items():
        if key == "status":
            if st.status not in values:
                return False
        elif key == "exited":
            if st.status != "exited" or str(st.exit_code) not in values:
                return False
        elif key == "name":
            if not any(_name_matches(v, c.name) for v in values):
                return False
        elif key == "id":
            if not any(c.id.startswith(v) for v in values):
                return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


_PS_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT"}


def _name_matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error as e:
        raise InvalidArgument(f"invalid filter name={pattern}: {e}") from None


def cmd_ps(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    cs.sweep_auto_removed()
    rows = []
    for c in cs.list():
        # One broken container (a bad config.json, run.json or state.json) is shown with an error marker in
        # STATUS, as docker shows a container it cannot read, and never stops the listing of the others.
        try:
            st: State | None = None
            c.check()
            st = cs.state(c)
            command = " ".join(cs.command(c))
            status = _status(st)
        except ImgcoreError as e:
            command, status = "", f"<error: {str(e).removeprefix(f'container {c.id[:12]}: ')}>"
        by_state = any(f.startswith(("status=", "exited=")) for f in args.filter or ())
        if args.filter and (st is None or not _ps_matches(c, st, args.filter)):
            continue
        if not ((st is not None and st.running) or args.all or by_state):  # a status filter shows stopped ones
            continue
        rows.append(
            (
                c.id if args.no_trunc else c.id[:12],
                c.image or "<error>",
                json.dumps(command if args.no_trunc else ellipsis(command, 20), ensure_ascii=False),
                _ago(c.created),
                status if args.no_trunc else ellipsis(status, 60),
                "",
                c.name,
                c.created,
                st.status if st is not None else "error",
            )
        )
    if args.quiet:
        for r in rows:
            print(r[0])
        return 0
    if args.format and args.format != "table":
        keys = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names", "CreatedAt", "State")
        objs = [dict(zip(keys, r, strict=True)) for r in rows]
        sys.stdout.write(render_rows(args.format, objs, _PS_HEADERS, missing_key="error"))
        return 0
    _table(("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"), [r[:7] for r in rows])
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    rc = 0
    for name in args.containers:
        try:
            c = cs.get(name)
            cs.remove(c, force=args.force)
            print(name)
        except Exception as e:
            if not isinstance(e, ImgcoreError | OSError):
                raise
            print(f"Error response from daemon: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_mount(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    print(cs.mount(cs.get(args.container)))
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    cs.unmount(cs.get(args.container))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    c = cs.get(args.container)
    try:
        r = cs.exec(c, argv, env=_env(args.env), workdir=args.workdir, user=args.user, tty=args.tty,
                    stdin=args.interactive, detach=args.detach, created_fallback=False)  # fmt: skip
    except ContainerStartFailed as e:
        print(f"Error response from daemon: {e}", file=sys.stderr)
        return int(getattr(e, "exit_status", 126))
    except Detached as e:
        print(str(e), file=sys.stderr)
        return 1
    return r.returncode


def _split_cp(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` -> (container, path); a host path (``./a:b``, ``/x``, ``-``) -> (None, path)."""
    if arg == "-" or arg.startswith(("/", ".")):
        return None, arg
    name, sep, path = arg.partition(":")
    return (name, path or "/") if sep and name else (None, arg)


def cmd_cp(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    src_c, src = _split_cp(args.src)
    dst_c, dst = _split_cp(args.dest)
    if (src_c is None) == (dst_c is None):
        raise InvalidArgument("copying between containers is not supported" if src_c else
                              "must specify at least one container source")  # fmt: skip
    if dst_c is not None:
        c = cs.get(dst_c)
        copy_to_container(cs.mount(c), sys.stdin.buffer if src == "-" else src, dst)
    else:
        assert src_c is not None
        c = cs.get(src_c)
        sys.stdout.flush()
        copy_from_container(cs.mount(c), src, sys.stdout.buffer if dst == "-" else dst)
    return 0


def inspect_container(cs: Containers, c: Container) -> dict[str, Any]:
    """``docker container inspect`` for one container: Id, State, Config, Mounts, GraphDriver, ...; a broken one
    (or a corrupt ``state.json``) shows ``State.Status`` ``unknown`` with the reason in ``State.Error``."""
    if c.error:
        return {"Id": c.id, "Created": c.created, "Name": "/" + c.name, "Driver": c.driver, "Image": c.image_id,
                "State": {"Status": "unknown", "Running": False, "Paused": False, "Error": c.error}}  # fmt: skip
    try:
        st = cs.state(c)
    except InvalidStateFile as bad:
        st = State(status="unknown", error=str(bad))
    opts = cs.options(c)
    record = cs.run_record(c)
    image = image_of(cs.store, c)
    rc = image.config.config
    command = cs.command(c)
    zero = "0001-01-01T00:00:00Z"
    env = list(rc.get("Env") or [])
    for e in opts.env:
        env = [x for x in env if x.split("=", 1)[0] != e.split("=", 1)[0]] + ([e] if "=" in e else [])
    mounts = [{"Type": "bind", "Source": v.source, "Destination": v.destination, "Mode": "ro" if v.read_only else "",
               "RW": not v.read_only, "Propagation": "rprivate"}
              for v in (parse_volume(x) if isinstance(x, str) else x for x in opts.volumes)]  # fmt: skip
    graph = (
        {"Name": "overlay2", "Data": {"LowerDir": ":".join(str(p) for p in cs.lowerdirs(c)), "UpperDir": str(c.upper),
                                      "WorkDir": str(c.path / "work"), "MergedDir": str(c.rootfs)}}
        if c.driver == "overlay" else {"Name": "vfs", "Data": {"Dir": str(c.rootfs)}}
    )  # fmt: skip
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "Status": st.status,
            "Running": st.status == "running",
            "Paused": st.status == "paused",
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": st.pid if st.running else 0,
            "ExitCode": st.exit_code if st.exit_code is not None else 0,
            "Error": st.error,
            "StartedAt": st.started_at or zero,
            "FinishedAt": st.finished_at or zero,
        },
        "Image": c.image_id,
        "ResolvConfPath": str(c.path / "resolv.conf"),
        "HostnamePath": str(c.path / "hostname"),
        "HostsPath": str(c.path / "hosts"),
        "LogPath": str(c.path / "container.log"),
        "Name": "/" + c.name,
        "Driver": c.driver,
        "HostConfig": {"AutoRemove": bool(record.get("auto_remove")), "NetworkMode": opts.network,
                       "Binds": [x if isinstance(x, str) else f"{x.source}:{x.destination}" for x in opts.volumes]},
        "GraphDriver": graph,
        "Mounts": mounts,
        "Config": {
            "Hostname": opts.hostname or c.id[:12],
            "User": opts.user if opts.user is not None else str(rc.get("User") or ""),
            "Tty": opts.tty,
            "OpenStdin": opts.open_stdin,
            "Env": env,
            "Cmd": list(opts.argv) if opts.argv else (None if opts.entrypoint is not None else rc.get("Cmd")),
            "Image": c.image,
            "WorkingDir": opts.workdir or str(rc.get("WorkingDir") or ""),
            "Entrypoint": list(opts.entrypoint) if opts.entrypoint is not None else rc.get("Entrypoint"),
            "Labels": rc.get("Labels") or {},
        },
    }  # fmt: skip


def cmd_diff(args: argparse.Namespace) -> int:
    _, cs = _ctx(args)
    for ch in cs.diff(cs.get(args.container), paranoid=args.paranoid):
        print(f"{ch.kind} {ch.path}")
    return 0


def _ago(created: str) -> str:
    return str(ago(created))


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    print("   ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    for r in rows:
        print("   ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip())


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "=true"):
        return True
    if value in ("false", "0", "no", "=false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("-v", "--volume", action="append", metavar="SRC:DST[:ro]")
    p.add_argument("--network", default="bridge", choices=["bridge", "default", "private", "none", "host"])
    p.add_argument("-h", "--hostname")
    p.add_argument("--runtime", help="the OCI runtime (default $IMGCORE_RUNTIME or runc)")
    p.add_argument("--driver", choices=["overlay", "copy"], help="default: overlay where root may mount it")
    p.add_argument("image")
    p.add_argument("argv", nargs=argparse.REMAINDER)


def register(sub: Any) -> None:
    """Adds the container commands to ``sub``."""
    p = sub.add_parser("create", help="create a container from an image", add_help=False)
    p.add_argument("--help", action="help")
    _run_flags(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("run", help="create and start a container", add_help=False)
    p.add_argument("--help", action="help")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    _run_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_start)

    for name, func, what in (("stop", cmd_stop, "stop"), ("restart", cmd_restart, "restart")):
        p = sub.add_parser(name, help=f"{what} running containers (SIGTERM, SIGKILL after -t seconds)")
        p.add_argument("-t", "--time", "--timeout", type=float, default=10.0)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("kill", help="send a signal to running containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_kill)

    for name, func in (("pause", cmd_pause), ("unpause", cmd_unpause), ("wait", cmd_wait)):
        p = sub.add_parser(name, help=f"{name} containers")
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("logs", help="a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default=None)
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("container")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("attach", help="attach to a running container's stdio")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--detach-keys", default=attach_mod.DEFAULT_DETACH_KEYS)
    p.add_argument("container")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also containers that are not running")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE", help="status=, exited=, name=, id=")
    p.add_argument("--format", help="a Go template (docker's fields: .ID .Image .Command .Names .Status ...), "
                   "'table TEMPLATE' or 'json'")  # fmt: skip
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("cp", help="copy files between a container and the host (CONTAINER:PATH, - for a tar)")
    p.add_argument("src")
    p.add_argument("dest")
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser("mount", help="mount a container's rootfs and print its path")
    p.add_argument("container")
    p.set_defaults(func=cmd_mount)

    p = sub.add_parser("umount", help="unmount a container's rootfs")
    p.add_argument("container")
    p.set_defaults(func=cmd_umount)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("container")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("diff", help="list a container's changes (A added, C changed, D deleted)")
    p.add_argument("container")
    p.add_argument("--paranoid", action="store_true", help="hash every file instead of trusting metadata")
    p.set_defaults(func=cmd_diff)


def inspect_any_container(store: ContentStore, name: str) -> dict[str, Any]:
    """``inspect``'s fallback when ``name`` is no image: the container it names (``ContainerNotFound`` if none)."""
    cs = Containers(store)
    return inspect_container(cs, cs.get(name))
