"""The OCI spec imgcore builds: docker's process/env/user rules, confined reads of a hostile rootfs, the bundle."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from imgcore.errors import InvalidArgument
from imgcore.runtime import host, runc
from imgcore.runtime.bwrap import bwrap_command
from imgcore.runtime.spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH_ENV,
    MASKED_PATHS,
    READONLY_PATHS,
    RunOptions,
    UserNotFound,
    Volume,
    build_spec,
    lookup_user,
    merge_env,
    missing_mountpoints,
    mkdir_in_root,
    parse_volume,
    read_in_root,
    resolv_conf,
    resolve_user,
    write_bundle,
)

RESOLVERS = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:1000:App:/home/app:/bin/sh\n"
        "# a comment\n"
        "svc:x:999:998::/var/svc:/bin/false\n"
        "huge:x:99999999999:1::/:/bin/sh\n"  # an invalid line is ignored, not an error
        "broken line without fields\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\nwheel:x:10:root\napp:x:1000:\nstaff:x:50:app,svc\nsvc:x:998:\nbig:x:99999999999:app\n"
    )
    return root


def spec_of(rootfs: Path, config: dict[str, object], **opts: object) -> dict[str, object]:
    return build_spec({"config": config}, rootfs, RunOptions(container_id="0123456789abcdef", **opts))  # type: ignore[arg-type]


def proc(spec: dict[str, object]) -> dict[str, object]:
    p = spec["process"]
    assert isinstance(p, dict)
    return p


# --------------------------------------------------------------------------------------------- argv


@pytest.mark.parametrize(
    ("config", "opts", "expected"),
    [
        ({"Cmd": ["sh"]}, {}, ["sh"]),
        ({"Entrypoint": ["/init"], "Cmd": ["--flag"]}, {}, ["/init", "--flag"]),
        ({"Entrypoint": ["/init"], "Cmd": ["--flag"]}, {"argv": ("run",)}, ["/init", "run"]),
        ({"Entrypoint": ["/init"], "Cmd": ["--flag"]}, {"entrypoint": ("/other",)}, ["/other"]),
        ({"Entrypoint": ["/init"], "Cmd": ["--flag"]}, {"entrypoint": ("/o",), "argv": ("x",)}, ["/o", "x"]),
        ({"Entrypoint": ["/init"], "Cmd": ["--flag"]}, {"entrypoint": (), "argv": ("ls",)}, ["ls"]),
        ({"Cmd": ["sh"]}, {"argv": ["ls", "-l"]}, ["ls", "-l"]),
    ],
)
def test_entrypoint_and_cmd_follow_docker(
    rootfs: Path, config: dict[str, object], opts: dict[str, object], expected: list[str]
) -> None:
    assert proc(spec_of(rootfs, config, **opts))["args"] == expected


def test_no_command_is_docker_error(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        spec_of(rootfs, {"Entrypoint": ["/init"]}, entrypoint=())


# --------------------------------------------------------------------------------------------- env


def test_env_order_and_overrides(rootfs: Path) -> None:
    env = proc(spec_of(rootfs, {"Cmd": ["sh"], "Env": ["A=1", "PATH=/img/bin", "B=2"]}, env=("B=3", "A", "C=4")))["env"]
    assert env == ["PATH=/img/bin", "HOSTNAME=0123456789ab", "B=3", "C=4", "HOME=/root"]


def test_env_default_path_term_with_tty_and_home_of_user(rootfs: Path) -> None:
    env = proc(spec_of(rootfs, {"Cmd": ["sh"], "User": "app"}, tty=True))["env"]
    assert env == [f"PATH={DEFAULT_PATH_ENV}", "HOSTNAME=0123456789ab", "TERM=xterm", "HOME=/home/app"]
    assert proc(spec_of(rootfs, {"Cmd": ["sh"], "Env": ["HOME=/x"]}))["env"][-1] == "HOME=/x"  # type: ignore[index]


def test_merge_env_is_moby_replace_or_append() -> None:
    assert merge_env(["A=1", "B=2"], ["B=x", "C=y", "A"]) == ["B=x", "C=y"]
    assert merge_env([], ["X"]) == []


# --------------------------------------------------------------------------------------------- user


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, (10,))),
        ("root", (0, 0, (10,))),
        ("app", (1000, 1000, (50,))),
        ("1000", (1000, 1000, (50,))),
        ("svc", (999, 998, (50,))),
        ("4242", (4242, 0, ())),  # unknown uid: allowed, gid 0, as docker
        ("app:staff", (1000, 50, ())),  # an explicit group: no supplementary groups
        ("app:4000", (1000, 4000, ())),
        ("4242:wheel", (4242, 10, ())),
    ],
)
def test_resolve_user_follows_docker(rootfs: Path, user: str, expected: tuple[int, int, tuple[int, ...]]) -> None:
    assert resolve_user(rootfs, user) == expected


def test_unknown_user_and_group_give_docker_messages(rootfs: Path) -> None:
    with pytest.raises(UserNotFound, match=r"^unable to find user xxx: no matching entries in passwd file$"):
        resolve_user(rootfs, "xxx")
    with pytest.raises(UserNotFound, match=r"^unable to find group nogrp: no matching entries in group file$"):
        resolve_user(rootfs, "app:nogrp")
    with pytest.raises(InvalidArgument, match="range"):
        resolve_user(rootfs, "99999999999")


def test_user_in_spec_and_missing_passwd(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    assert resolve_user(root, "") == (0, 0, ())
    assert resolve_user(root, "5:6") == (5, 6, ())
    with pytest.raises(UserNotFound, match="unable to find user app"):
        resolve_user(root, "app")


@pytest.mark.parametrize("use_openat2", RESOLVERS)
@pytest.mark.parametrize("link", ["ABS", "../../../../../../ABS", "/etc/../../../ABS"])
def test_passwd_symlink_out_of_rootfs_is_not_followed(tmp_path: Path, use_openat2: bool, link: str) -> None:
    host_file = tmp_path / "host-passwd"
    host_file.write_text("evil:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(link.replace("ABS", str(host_file).lstrip("/")) if "../" in link
                                         else link.replace("ABS", str(host_file)))  # fmt: skip
    assert read_in_root(root, "/etc/passwd", 1 << 20, use_openat2=use_openat2) is None
    with pytest.raises(UserNotFound):
        lookup_user(root, "evil", use_openat2=use_openat2)


@pytest.mark.parametrize("use_openat2", RESOLVERS)
def test_symlinks_inside_rootfs_resolve_against_it(tmp_path: Path, use_openat2: bool) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "share").mkdir(parents=True)
    (root / "usr" / "share" / "passwd").write_text("inside:x:7:8::/:/bin/sh\n")
    (root / "etc").symlink_to("/usr/share")  # absolute: means the rootfs's /usr/share
    assert lookup_user(root, "inside", use_openat2=use_openat2).uid == 7
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="Too many"):
        read_in_root(root, "/loop", 10, use_openat2=use_openat2)


def test_hostile_account_files_fifo_device_and_size(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "passwd")
    done = threading.Event()

    def look() -> None:
        with pytest.raises(InvalidArgument, match="not a regular file"):
            lookup_user(root, "x")
        done.set()

    t = threading.Thread(target=look, daemon=True)
    t.start()
    t.join(5)
    assert done.is_set(), "a FIFO as /etc/passwd blocked the lookup"
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").write_bytes(b"a:x:1:1::/:/bin/sh\n" * 300_000)
    with pytest.raises(InvalidArgument, match="larger than"):
        lookup_user(root, "a")


# --------------------------------------------------------------------------------------------- workdir


@pytest.mark.parametrize("use_openat2", RESOLVERS)
def test_workdir_created_confined_through_symlinks(tmp_path: Path, use_openat2: bool) -> None:
    root = tmp_path / "rootfs"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "app").symlink_to(str(outside))  # to the host path: must mean <rootfs><outside>
    (root / str(outside).lstrip("/")).mkdir(parents=True)
    assert mkdir_in_root(root, "/app/sub/dir", use_openat2=use_openat2)
    assert (root / str(outside).lstrip("/") / "sub" / "dir").is_dir()
    assert list(outside.iterdir()) == []
    assert not mkdir_in_root(root, "/app/sub/dir", use_openat2=use_openat2)
    (root / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        mkdir_in_root(root, "/file/x", use_openat2=use_openat2)
    (root / "dangling").symlink_to("/nowhere")
    with pytest.raises(InvalidArgument, match="dangling"):
        mkdir_in_root(root, "/dangling", use_openat2=use_openat2)


def test_workdir_in_spec(rootfs: Path) -> None:
    assert proc(spec_of(rootfs, {"Cmd": ["sh"]}))["cwd"] == "/"
    assert proc(spec_of(rootfs, {"Cmd": ["sh"], "WorkingDir": "/srv/./app/"}))["cwd"] == "/srv/app"
    assert (rootfs / "srv" / "app").is_dir()
    assert proc(spec_of(rootfs, {"Cmd": ["sh"], "WorkingDir": "/srv"}, workdir="/opt"))["cwd"] == "/opt"
    with pytest.raises(InvalidArgument, match="needs to be an absolute path"):
        spec_of(rootfs, {"Cmd": ["sh"], "WorkingDir": "rel"})


# --------------------------------------------------------------------------------------------- security profile


def test_docker_default_security_profile(rootfs: Path) -> None:
    spec = spec_of(rootfs, {"Cmd": ["sh"]})
    p = proc(spec)
    caps = p["capabilities"]
    assert isinstance(caps, dict)
    assert set(caps) == {"bounding", "effective", "permitted"}
    assert all(caps[k] == list(DEFAULT_CAPABILITIES) for k in caps)
    assert len(DEFAULT_CAPABILITIES) == 14
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    assert "noNewPrivileges" not in p
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert {ns["type"] for ns in linux["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert set(MASKED_PATHS) <= set(linux["maskedPaths"])
    assert "/proc/kcore" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert linux["cgroupsPath"] == "/imgcore/0123456789abcdef"
    rules = linux["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    opened = {(r["type"], r.get("major"), r.get("minor")) for r in rules if r["allow"] and "r" in r["access"]}
    assert opened == {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
                      ("c", 5, 2), ("c", 136, None)}  # fmt: skip
    assert not any(r["allow"] and r.get("type") == "b" and "r" in r["access"] for r in rules)


def test_mounts_are_dockers_and_sorted_by_depth(rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    spec = spec_of(rootfs, {"Cmd": ["sh"]}, volumes=(f"{src}:/dev/data:ro", Volume(str(src), "/etc/hosts")))
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    by_dest = {m["destination"]: m for m in mounts}
    depth = [len(m["destination"].strip("/").split("/")) for m in mounts]
    assert depth == sorted(depth)
    assert by_dest["/sys"]["options"][-1] == "ro"
    assert by_dest["/sys"]["type"] == "sysfs"
    assert "ro" in by_dest["/sys/fs/cgroup"]["options"]
    assert {"newinstance", "ptmxmode=0666", "gid=5"} <= set(by_dest["/dev/pts"]["options"])
    assert "mode=755" in by_dest["/dev"]["options"]
    assert f"size={64 * 1024 * 1024}" in by_dest["/dev/shm"]["options"]
    assert by_dest["/dev/data"] == {"destination": "/dev/data", "type": "bind", "source": str(src),
                                    "options": ["rbind", "rprivate", "ro"]}  # fmt: skip
    assert by_dest["/etc/hosts"]["source"] == str(src)  # a -v onto /etc/hosts replaces the private file
    assert by_dest["/etc/resolv.conf"]["source"] == "../resolv.conf"
    assert "/dev/mqueue" in by_dest


def test_parse_volume_rules(tmp_path: Path) -> None:
    assert parse_volume(f"{tmp_path}:/data//x/:ro") == Volume(str(tmp_path), "/data/x", True)
    assert parse_volume(f"{tmp_path}:/d") == Volume(str(tmp_path), "/d", False)
    for bad, why in [("name:/d", "named volumes"), (f"{tmp_path}:rel", "absolute"), (f"{tmp_path}:/", "cannot be /"),
                     (f"{tmp_path}/missing:/d", "does not exist"), (f"{tmp_path}:/d:xx", "unknown mode"),
                     ("/only", "want SRC:DST")]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=why):
            parse_volume(bad)


def test_network_modes_and_hostname(rootfs: Path) -> None:
    spec = spec_of(rootfs, {"Cmd": ["sh"]}, network="host")
    assert spec["hostname"] == socket.gethostname()
    assert "network" not in {ns["type"] for ns in spec["linux"]["namespaces"]}  # type: ignore[index]
    assert spec_of(rootfs, {"Cmd": ["sh"]}, hostname="web")["hostname"] == "web"
    assert spec_of(rootfs, {"Cmd": ["sh"]}, network="none")["hostname"] == "0123456789ab"
    with pytest.raises(InvalidArgument, match="container id"):
        RunOptions(container_id="../../escape")
    assert proc(build_spec({"User": "app", "Cmd": ["sh"]}, rootfs, RunOptions()))["user"]["uid"] == 1000  # type: ignore[index]
    with pytest.raises(InvalidArgument, match="network 'overlay'"):
        RunOptions(network="overlay")
    with pytest.raises(InvalidArgument, match="invalid hostname"):
        spec_of(rootfs, {"Cmd": ["sh"]}, hostname="a b")


# --------------------------------------------------------------------------------------------- bundle


def test_write_bundle_private_files(rootfs: Path, tmp_path: Path) -> None:
    cdir = tmp_path / "c1"
    spec = spec_of(rootfs, {"Cmd": ["sh"]})
    bundle = write_bundle(cdir, spec)
    assert bundle == cdir / "bundle"
    config = json.loads((bundle / "config.json").read_text())
    assert (bundle / "config.json").stat().st_mode & 0o777 == 0o600
    assert config["root"]["path"] == str(rootfs)
    srcs = {m["destination"]: m["source"] for m in config["mounts"] if m["type"] == "bind"}
    assert srcs == {"/etc/hosts": str(cdir / "hosts"), "/etc/hostname": str(cdir / "hostname"),
                    "/etc/resolv.conf": str(cdir / "resolv.conf")}  # fmt: skip
    assert (cdir / "hostname").read_text() == "0123456789ab\n"
    assert (cdir / "hosts").read_text().startswith("127.0.0.1\tlocalhost\n")
    assert "nameserver" in (cdir / "resolv.conf").read_text()
    unchanged = {m["destination"]: m["source"] for m in spec["mounts"]}  # type: ignore[attr-defined]
    assert unchanged["/etc/hosts"] == "../hosts"  # the input spec is not modified


def test_resolv_conf_filters_loopback_for_private_network() -> None:
    host_text = "search example.com\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.2.3\noptions edns0\n"
    assert resolv_conf(False, host_text=host_text) == "search example.com\nnameserver 10.1.2.3\noptions edns0\n"
    assert resolv_conf(True, host_text=host_text) == host_text
    only_local = "nameserver 127.0.0.1\n"
    assert resolv_conf(False, host_text=only_local) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


# --------------------------------------------------------------------------------------------- host helpers


def test_host_env_is_fixed_and_minimal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/evil.so")
    monkeypatch.setenv("PATH", "/evil/bin")
    env = host.host_env()
    assert env == {"PATH": host.HOST_PATH, "LC_ALL": "C"}
    assert all(d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin") for d in host.HOST_PATH.split(":"))


def test_which_ignores_callers_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "imgcore-fake-tool").write_text("#!/bin/sh\n")
    (fake / "imgcore-fake-tool").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(host.RuntimeUnavailable, match="not found in /usr/sbin"):
        host.which("imgcore-fake-tool")
    assert host.which(str(fake / "imgcore-fake-tool")) == str(fake / "imgcore-fake-tool")
    with pytest.raises(host.RuntimeUnavailable, match="must be absolute"):
        host.which("bin/imgcore-fake-tool")
    assert host.which("sh").startswith("/")


def test_no_runtime_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "HOST_PATH", str(tmp_path))
    monkeypatch.delenv("IMGCORE_RUNTIME", raising=False)
    with pytest.raises(host.RuntimeUnavailable) as e:
        runc.find_sandbox()
    assert "bubblewrap is not installed" in str(e.value)
    assert ("'runc' not found" if os.geteuid() == 0 else "runc needs root") in str(e.value)


def test_start_failure_exit_codes() -> None:
    nf = 'runc run failed: unable to start container process: exec: "nope": executable file not found in $PATH'
    assert runc.start_failure_exit_code(nf) == 127
    assert runc.start_failure_exit_code('unable to start container process: exec: "/x": stat /x: no such file '
                                        "or directory") == 127  # fmt: skip
    assert runc.start_failure_exit_code('unable to start container process: exec: "/etc": permission denied') == 126
    assert runc.start_failure_exit_code("some other error") is None


def test_runtime_argv_uses_private_root(tmp_path: Path) -> None:
    rt = runc.Runtime(Path("/usr/sbin/runc"), tmp_path / "state")
    assert rt.argv("state", "x") == ["/usr/sbin/runc", "--root", str(tmp_path / "state"), "state", "x"]
    with pytest.raises(InvalidArgument, match="container id"):
        rt.kill("../x")


def test_bwrap_command_translates_spec(rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol"
    src.mkdir()
    spec = spec_of(rootfs, {"Cmd": ["sh", "-c", "pwd"], "WorkingDir": "/w", "Env": ["A=1"]}, volumes=(f"{src}:/v:ro",))
    bundle = write_bundle(tmp_path / "c", spec)
    cmd = bwrap_command(json.loads((bundle / "config.json").read_text()), "/usr/bin/bwrap")
    argv = cmd.argv
    assert argv[0] == "/usr/bin/bwrap"
    assert argv[-4:] == ["--", "sh", "-c", "pwd"]
    joined = " ".join(argv)
    assert f"--bind {rootfs} /" in joined
    assert f"--ro-bind {src} /v" in joined
    assert {"--unshare-net", "--unshare-pid", "--clearenv", "--new-session"} <= set(argv)
    assert "--setenv A 1" in joined
    assert "--chdir /w" in joined
    assert f"--bind {tmp_path / 'c' / 'hosts'} /etc/hosts" in joined
    assert any("device cgroup" in w for w in cmd.warnings)


def test_seccomp_profile_denies_escape_calls(rootfs: Path) -> None:
    profile = spec_of(rootfs, {"Cmd": ["sh"]})["linux"]["seccomp"]  # type: ignore[index]
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {n for r in profile["syscalls"] if "args" not in r for n in r["names"]}
    assert {"unshare", "setns", "mount", "keyctl", "bpf", "open_by_handle_at", "init_module", "kexec_load"} <= denied
    assert "clone3" in denied
    clone_masks = {r["args"][0]["value"] for r in profile["syscalls"] if r["names"] == ["clone"]}
    assert 0x10000000 in clone_masks  # CLONE_NEWUSER
    assert "ptrace" not in denied  # docker allows it on kernels >= 4.8


def test_missing_mountpoints(rootfs: Path, tmp_path: Path) -> None:
    vol = tmp_path / "v"
    vol.mkdir()
    (rootfs / "proc").mkdir()
    (rootfs / "etc" / "hosts").write_text("")
    (rootfs / "srv").symlink_to("/elsewhere")  # behind a symlink: created at the target, not listed
    spec = spec_of(rootfs, {"Cmd": ["sh"]}, volumes=(f"{vol}:/data/x", f"{vol}:/data/x/inner", f"{vol}:/srv/y"))
    assert missing_mountpoints(rootfs, spec) == ["/data", "/data/x", "/dev", "/etc/hostname", "/etc/resolv.conf",
                                                 "/sys"]  # fmt: skip
