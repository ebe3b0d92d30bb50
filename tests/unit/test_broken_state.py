"""One broken image or container never breaks the commands over the others (issue 10, items 5 and 6).

Containers: each state file (``config.json``, ``run.json``, the monitor's ``state.json``, the bundle's
``config.json``) is corrupted in several ways; ``ps -a`` shows the container with an ``<error: ...>`` STATUS,
``prune``, ``df``, ``rmi`` and ``inspect`` never crash, ``fsck`` names the file, ``fsck --repair`` moves it into
``lost+found``, and ``rm`` removes the container. Images: a bad config, a missing or corrupt config blob, a
missing manifest and a bad ``created`` are listed by ``images`` (the first four with an ``<error: ...>`` SIZE)
beside a good image, and ``rmi`` removes each by tag and by the ID ``images`` shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgcore.cli import main
from imgcore.containers.manager import Containers
from imgcore.errors import InvalidStateFile
from imgcore.models import OCI_CONFIG, OCI_MANIFEST, Descriptor, Manifest, canonical_json
from imgcore.store import ContentStore
from tests.images_helpers import make_image
from tests.validate import assert_valid_image

BAD_DIGEST_RECORD = (
    b'{"id": "%(id)s", "name": "n", "image": "i", "manifest_digest": "sha256:zz", "image_id": "", "created": "",'
    b' "driver": "copy"}'
)
CORRUPT_CONTAINER_FILES = [
    ("config.json", b'{"id": "x", "name": '),  # truncated
    ("config.json", b"[1, 2]"),
    ("config.json", b'{"id": 5}'),
    ("config.json", b"[" * 100 + b"]" * 100),
    ("config.json", None),  # missing
    ("config.json", BAD_DIGEST_RECORD),
    ("run.json", b'{"options": {"argv": "ls"}}'),
    ("run.json", b"not json"),
    ("run.json", b'{"mountpoints": [1]}'),
    ("state.json", b'{"status": "bogus"}'),
    ("state.json", b'{"status": "exited", "pid": "12"}'),
    ("state.json", b'{"status": "exited", "exit_code": 1' + b"0" * 200 + b"}"),
    ("state.json", b'{"status": "exited"'),
    ("bundle/config.json", b"\xff\xfe garbage"),
]


def cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _ps_status(out: str, cid: str) -> str:
    line = next(x for x in out.splitlines() if x.startswith(cid[:12]))
    return line


@pytest.mark.parametrize(("name", "content"), CORRUPT_CONTAINER_FILES)
def test_a_corrupt_container_state_file(
    capsys: pytest.CaptureFixture[str], root: Path, name: str, content: bytes | None
) -> None:
    store = ContentStore(root)
    make_image(store, "base:1", {"etc/hostname": b"base\n"})
    make_image(store, "other:1", {"etc/other": b"other\n"})
    cs = Containers(store)
    good = cs.create("base:1", name="good", driver="copy")
    bad = cs.create("base:1", name="bad", driver="copy")
    target = bad.path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content.replace(b"%(id)s", bad.id.encode()))

    code, out, _ = cli(capsys, root, "ps", "-a")
    assert code == 0
    assert "good" in _ps_status(out, good.id)
    if name != "bundle/config.json":  # the bundle is read only by start/exec and the monitor
        assert "<error: " in _ps_status(out, bad.id), out
    code, out, _ = cli(capsys, root, "ps", "-a", "--no-trunc")
    assert code == 0
    assert bad.id in out
    for args in (("df",), ("prune", "-f"), ("rmi", "other:1"), ("images",)):
        code, out, err = cli(capsys, root, *args)
        assert code == 0, (args, out, err)
    code, out, err = cli(capsys, root, "inspect", bad.id)
    assert code in (0, 1), err
    if code == 1:
        assert err.startswith("Error"), err
        assert bad.id[:12] in err, err
    else:
        assert json.loads(out)[0]["Id"] == bad.id

    code, out, _ = cli(capsys, root, "fsck")
    assert code == 1
    assert str(target) in out, out
    assert str(good.path) not in out
    code, out, _ = cli(capsys, root, "fsck", "--repair")
    assert code == 1
    assert "moved to" in out or content is None, out
    if content is not None:
        assert not target.exists()
        assert any(p.name.endswith(name.replace("/", "-")) for p in store.paths.lost_and_found.iterdir())

    code, out, err = cli(capsys, root, "rm", bad.id[:12])
    assert code == 0, err
    assert [c.name for c in cs.list()] == ["good"]
    code, out, _ = cli(capsys, root, "fsck")
    assert code == 0, out
    assert_valid_image(store, "base:1")
    assert cs.get("good").error == ""


def test_a_broken_container_keeps_its_image_and_refuses_everything_but_rm(root: Path) -> None:
    store = ContentStore(root)
    make_image(store, "base:1", {"etc/hostname": b"base\n"})
    cs = Containers(store)
    c = cs.create("base:1", name="bad", driver="copy")
    record = json.loads((c.path / "config.json").read_bytes())
    record["chain_ids"] = "not a list"
    (c.path / "config.json").write_text(json.dumps(record))
    broken = cs.get("bad")  # the name it still has is kept
    assert "chain_ids" in broken.error
    assert broken.manifest_digest == c.manifest_digest
    with pytest.raises(InvalidStateFile, match="chain_ids"):
        cs.diff(broken)
    with pytest.raises(InvalidStateFile):
        cs.mount(broken)
    assert main(["--root", str(root), "rmi", "-f", "base:1"]) == 0
    assert main(["--root", str(root), "prune", "-a", "-f"]) == 0
    assert store.has_blob(c.manifest_digest)  # the broken record still names it: the collection keeps it
    cs.remove(broken)
    assert not cs.list()


# ------------------------------------------------------------------------------------------------- images


def _manifest_with_config(store: ContentStore, ref: str, config: bytes) -> str:
    cdesc = store.put_blob(config)
    m = Manifest.build(Descriptor(OCI_CONFIG, cdesc.digest, cdesc.size), [], media_type=OCI_MANIFEST)
    mdesc = store.put_manifest(m.raw, m.media_type)
    store.tag(ref, mdesc)
    return mdesc.digest


def _break(store: ContentStore, how: str) -> str:
    """A broken image tagged ``broken:<how>``; returns its manifest digest."""
    if how == "bad-config":
        return _manifest_with_config(store, f"broken:{how}", canonical_json({"rootfs": "x", "os": 5}))
    if how == "deep-config":
        return _manifest_with_config(store, f"broken:{how}", b'{"config": ' * 80 + b"{}" + b"}" * 80)
    img = make_image(store, f"broken:{how}", {f"{how}.txt": how.encode()})
    path = store.blob_path(img.id)
    if how == "missing-config":
        path.unlink()
    elif how == "corrupt-config":
        path.chmod(0o644)
        path.write_bytes(path.read_bytes().replace(b'"os"', b'"OS"'))
    elif how == "missing-manifest":
        store.blob_path(img.manifest_desc.digest).unlink()
    return img.manifest_desc.digest


BROKEN = ["bad-config", "deep-config", "missing-config", "corrupt-config", "missing-manifest"]


@pytest.mark.parametrize("how", BROKEN)
@pytest.mark.parametrize("by", ["tag", "id"])
def test_a_broken_image_is_listed_with_an_error_and_rmi_removes_it(
    capsys: pytest.CaptureFixture[str], root: Path, how: str, by: str
) -> None:
    store = ContentStore(root)
    make_image(store, "good:1", {"etc/hostname": b"good\n"})
    digest = _break(store, how)
    code, out, _ = cli(capsys, root, "images")
    assert code == 0
    lines = out.splitlines()
    assert any(x.startswith("good ") for x in lines)
    row = next(x for x in lines if x.startswith("broken "))
    assert how in row
    assert "<error: " in row, out
    assert digest.partition(":")[2][:12] in row
    code, out, _ = cli(capsys, root, "images", "-q")
    assert digest.partition(":")[2][:12] in out
    code, out, _ = cli(capsys, root, "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}")
    assert f"broken:{how} <error: " in out
    for args in (("df",), ("prune", "-f")):
        assert cli(capsys, root, *args)[0] == 0, args

    target = f"broken:{how}" if by == "tag" else digest.partition(":")[2][:12]
    code, out, err = cli(capsys, root, "rmi", target)
    assert code == 0, err
    assert f"Deleted: {digest}" in out
    assert not [d for d in store.index_entries() if d.digest == digest]
    code, out, _ = cli(capsys, root, "images")
    assert "broken" not in out
    assert code == 0
    code, out, _ = cli(capsys, root, "fsck")
    assert code == 0 or how == "corrupt-config", out
    assert_valid_image(store, "good:1")
    _break(store, how)
    assert cli(capsys, root, "prune", "-a", "-f")[0] == 0


def test_a_bad_created_is_listed_without_a_time(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    store = ContentStore(root)
    make_image(store, "good:1", {"etc/hostname": b"good\n"})
    make_image(store, "when:bad", {"x": b"x"}, created="yesterday at noon")
    code, out, _ = cli(capsys, root, "images")
    assert code == 0
    row = next(x for x in out.splitlines() if x.startswith("when "))
    assert "N/A" in row
    assert "<error" not in row
    assert cli(capsys, root, "rmi", "when:bad")[0] == 0
    assert "when" not in cli(capsys, root, "images")[1]


def test_a_state_file_symlink_is_reported(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    store = ContentStore(root)
    make_image(store, "base:1", {"etc/hostname": b"base\n"})
    c = Containers(store).create("base:1", name="c", driver="copy")
    (c.path / "state.json").symlink_to("/etc/passwd")
    code, out, _ = cli(capsys, root, "fsck")
    assert code == 1
    assert "symlink" in out
    code, out, _ = cli(capsys, root, "ps", "-a")
    assert code == 0
    assert "<error: " in out
