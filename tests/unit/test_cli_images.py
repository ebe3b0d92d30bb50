"""The image commands as a user types them: output in docker's formats, errors on stderr with exit status 1."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import subprocess
import sys

import pytest

from imgcore._humanize import human_size
from imgcore.cli import main
from imgcore.image import catalog
from imgcore.store import ContentStore
from tests.images_helpers import layer_tar, make_image
from tests.validate import assert_valid_image


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "store")


@pytest.fixture
def seeded(root):
    """The seed's `docker images` picture: new_tomcat (6 seconds), tomcat (12 days), hello-world (12 months)."""
    store = ContentStore(root)
    now = dt.datetime.now(dt.UTC)
    base = make_image(
        store,
        "tomcat:latest",
        {"usr/local/tomcat/webapps.dist/ROOT/index.jsp": b"x" * 300_000, "usr/local/tomcat/webapps/": None},
        created=now - dt.timedelta(days=12, minutes=1),
        created_by="/bin/sh -c #(nop) COPY dir:0123456789abcdef0123456789abcdef in /usr/local/tomcat/webapps.dist",
    )
    child = make_image(
        store,
        "new_tomcat:1.0",
        {"usr/local/tomcat/webapps/ROOT/index.jsp": b"x" * 300_000},
        parent=base,
        created=now - dt.timedelta(seconds=6),
        comment="newtomcat",
        author="xxx",
        created_by="imgcore commit",
    )
    hello = make_image(store, "hello-world:latest", {"hello": b"h" * 12_000}, created=now - dt.timedelta(days=370))
    return store, base, child, hello


def run(root, *args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "imgcore", "--root", root, *args], input=stdin, capture_output=True, check=False
    )


# ------------------------------------------------------------------------------------------------- images


def test_images_table_like_docker(root, seeded, capsys):
    _, base, child, hello = seeded
    assert main(["--root", root, "images"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert lines[0].startswith("REPOSITORY    TAG       IMAGE ID       CREATED ")
    rows = [re.split(r"\s{2,}", line) for line in lines[1:]]
    store = seeded[0]
    assert rows == [
        ["new_tomcat", "1.0", child.short_id, rows[0][3], human_size(catalog.image_size(store, child))],
        ["tomcat", "latest", base.short_id, "12 days ago", human_size(catalog.image_size(store, base))],
        ["hello-world", "latest", hello.short_id, "12 months ago", human_size(catalog.image_size(store, hello))],
    ]
    assert re.fullmatch(r"[6-9] seconds ago", rows[0][3])
    assert [r[4] for r in rows] == ["614kB", "307kB", "20.5kB"]  # tars of 2 x 300 kB, 300 kB, 12 kB of files
    # columns align: every IMAGE ID starts at the same offset
    assert len({line.index(row[2]) for line, row in zip(lines[1:], rows, strict=True)}) == 1


def test_images_quiet_no_trunc_digests_and_json(root, seeded, capsys):
    _, base, child, hello = seeded
    assert main(["--root", root, "images", "-q"]) == 0
    assert capsys.readouterr().out.split() == [child.short_id, base.short_id, hello.short_id]
    assert main(["--root", root, "images", "-q", "--no-trunc"]) == 0
    assert capsys.readouterr().out.split() == [child.id, base.id, hello.id]
    assert main(["--root", root, "images", "--digests", "tomcat"]) == 0
    out = capsys.readouterr().out
    assert "DIGEST" in out.splitlines()[0]
    assert base.digest in out
    assert main(["--root", root, "images", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "<" not in out
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["Repository"] for o in objs] == ["new_tomcat", "tomcat", "hello-world"]
    assert objs[0] == {
        "Containers": "N/A",
        "CreatedAt": objs[0]["CreatedAt"],
        "CreatedSince": objs[0]["CreatedSince"],
        "Digest": child.digest,  # the same digest --digests shows, asked for or not (docker's JSON always has it)
        "ID": child.short_id,
        "Repository": "new_tomcat",
        "SharedSize": "N/A",
        "Size": "614kB",
        "Tag": "1.0",
        "UniqueSize": "N/A",
        "VirtualSize": "614.4kB",
    }
    assert objs[0]["CreatedAt"].endswith(" +0000 UTC")
    assert re.fullmatch(r"[6-9] seconds ago", objs[0]["CreatedSince"])


def test_images_filters_and_reference_argument(root, seeded, capsys):
    store, *_ = seeded
    dangling = make_image(store, None, {"d": b"1"})
    assert main(["--root", root, "images", "--filter", "dangling=true"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert re.split(r"\s{2,}", lines[1])[:3] == ["<none>", "<none>", dangling.short_id]
    assert main(["--root", root, "images", "-f", "dangling=false", "-q"]) == 0
    assert dangling.short_id not in capsys.readouterr().out
    assert main(["--root", root, "images", "--filter", "reference=*tomcat*"]) == 0
    out = capsys.readouterr().out
    assert "new_tomcat" in out
    assert "hello-world" not in out
    assert main(["--root", root, "images", "tomcat"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["tomcat"]
    assert main(["--root", root, "image", "ls", "hello-world:latest", "-q"]) == 0
    assert len(capsys.readouterr().out.split()) == 1


def test_images_and_history_go_templates(root, seeded, capsys):
    _, base, child, hello = seeded
    assert main(["--root", root, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"new_tomcat:1.0 {child.short_id}",
        f"tomcat:latest {base.short_id}",
        f"hello-world:latest {hello.short_id}",
    ]
    assert main(["--root", root, "images", "--format", "table {{.ID}}\\t{{.Repository}}", "tomcat"]) == 0
    assert capsys.readouterr().out.splitlines() == ["IMAGE ID       REPOSITORY", f"{base.short_id}   tomcat"]
    assert main(["--root", root, "images", "--format", "{{json .Tag}}", "--filter", "reference=hello*"]) == 0
    assert capsys.readouterr().out == '"latest"\n'
    assert main(["--root", root, "images", "--format", "{{.Digest}}", "tomcat"]) == 0
    assert capsys.readouterr().out == f"{base.digest}\n"  # a template naming .Digest gets the digest
    assert main(["--root", root, "history", "--format", "{{.ID}}|{{.Comment}}", "new_tomcat:1.0"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{child.short_id}|newtomcat", "<missing>|"]
    assert main(["--root", root, "images", "--format", "{{.Nope}}"]) == 1
    assert 'map has no entry for key "Nope"' in capsys.readouterr().err
    fmt = '{{upper .Repository}} {{if eq .Tag "latest"}}L{{else}}{{.Tag}}{{end}}'
    assert main(["--root", root, "images", "--format", fmt, "--filter", "reference=*tomcat*"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == ["NEW_TOMCAT 1.0", "TOMCAT L"]
    # inspect -f, as docker's documentation writes it
    assert main(["--root", root, "inspect", "-f", '{{.Id}} {{join .RepoTags ","}}', "new_tomcat:1.0"]) == 0
    assert capsys.readouterr().out == f"{child.id} new_tomcat:1.0\n"
    assert main(["--root", root, "inspect", "--format", "{{json .RootFS.Layers}}", "tomcat"]) == 0
    assert json.loads(capsys.readouterr().out) == list(base.config.diff_ids)
    assert (
        main(["--root", root, "inspect", "-f", "{{range $i, $l := .RootFS.Layers}}{{$i}} {{end}}", "new_tomcat:1.0"])
        == 0
    )
    assert capsys.readouterr().out == " ".join(str(i) for i in range(len(child.config.diff_ids))) + " \n"
    assert main(["--root", root, "inspect", "-f", "{{.Nope", "tomcat"]) == 1
    assert capsys.readouterr().err.startswith('Error: template "{{.Nope": ')


def test_images_bad_filter_is_an_error(root, seeded):
    p = run(root, "images", "--filter", "dangling=maybe")
    assert p.returncode == 1
    assert b"Error: invalid filter 'dangling=maybe'" in p.stderr
    p = run(root, "images", "--filter", "colour=red")
    assert p.returncode == 1
    assert b"supported filters are" in p.stderr
    p = run(root, "images", "--format", "yaml")
    assert p.returncode == 0  # a template without fields prints the text once per row, as docker does
    assert p.stdout.splitlines() == [b"yaml"] * 3


# ------------------------------------------------------------------------------------------------- tag, rmi


def test_tag_and_rmi(root, seeded, capsys):
    store, base, child, _ = seeded
    assert main(["--root", root, "tag", "tomcat", "myreg.local:5000/web/tomcat:9"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--root", root, "tag", base.short_id, "tomcat:old"]) == 0
    assert_valid_image(store, "myreg.local:5000/web/tomcat:9")
    assert main(["--root", root, "rmi", "myreg.local:5000/web/tomcat:9"]) == 0
    assert capsys.readouterr().out == "Untagged: myreg.local:5000/web/tomcat:9\n"
    assert main(["--root", root, "rmi", base.short_id]) == 1
    err = capsys.readouterr().err
    assert f"conflict: unable to delete {base.short_id} (must be forced) - image is referenced in multiple" in err
    assert main(["--root", root, "rmi", "-f", base.short_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["Untagged: tomcat:latest", "Untagged: tomcat:old", f"Deleted: {base.id}"]
    assert_valid_image(store, "new_tomcat:1.0")  # the shared layer survived
    assert main(["--root", root, "rmi", "new_tomcat:1.0", "nope", "Bad/Name"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:2] == ["Untagged: new_tomcat:1.0", f"Deleted: {child.id}"]
    assert "Error: No such image: nope:latest" in captured.err
    assert "Error: invalid reference 'Bad/Name'" in captured.err


def test_tag_errors(root, seeded):
    p = run(root, "tag", "tomcat", "Tomcat:9")
    assert p.returncode == 1
    assert b"Error: invalid reference 'Tomcat:9': repository name must be lowercase" in p.stderr
    p = run(root, "tag", "missing", "x:1")
    assert p.returncode == 1
    assert p.stderr == b"Error: No such image: missing:latest\n"
    p = run(root, "tag", "tomcat")
    assert p.returncode == 125  # docker: a usage error exits 125


# ------------------------------------------------------------------------------------------------- history


def test_history_table(root, seeded, capsys):
    _, base, child, _ = seeded
    assert main(["--root", root, "history", "new_tomcat:1.0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    top = re.split(r"\s{2,}", lines[1])
    assert top == [child.short_id, top[1], "imgcore commit", "307kB", "newtomcat"]
    assert re.fullmatch(r"[6-9] seconds ago", top[1])
    bottom = re.split(r"\s{2,}", lines[2].rstrip())
    assert bottom[0] == "<missing>"
    assert bottom[1] == "12 days ago"
    assert bottom[2] == "/bin/sh -c #(nop) COPY dir:0123456789abcdef0…"  # docker's Ellipsis
    assert len(bottom[2]) == 45
    assert bottom[3] == "307kB"
    assert main(["--root", root, "history", "--no-trunc", "new_tomcat:1.0"]) == 0
    out = capsys.readouterr().out
    assert child.id in out
    assert "COPY dir:0123456789abcdef0123456789abcdef in /usr/local/tomcat/webapps.dist" in out
    assert main(["--root", root, "history", "-q", "new_tomcat:1.0"]) == 0
    assert capsys.readouterr().out.split() == [child.short_id, "<missing>"]
    assert main(["--root", root, "history", "-H", "false", "new_tomcat:1.0"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line)
    assert re.split(r"\s{2,}", line)[3] == "307200"  # bytes, not humanised
    assert main(["--root", root, "history", "--format", "json", "tomcat"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["ID"] == base.short_id
    assert obj["Size"] == "307kB"


def test_history_errors(root, seeded):
    p = run(root, "history", "nope")
    assert p.returncode == 1
    assert p.stderr == b"Error: No such image: nope:latest\n"
    p = run(root, "history", "not a ref!")
    assert p.returncode == 1
    assert b"invalid reference" in p.stderr


# ------------------------------------------------------------------------------------------------- inspect


def test_inspect(root, seeded, capsys):
    _, base, child, _ = seeded
    assert main(["--root", root, "inspect", "new_tomcat:1.0", base.short_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith('[\n    {\n        "Id": ')  # docker's 4-space indent
    data = json.loads(out)
    assert [d["Id"] for d in data] == [child.id, base.id]
    assert data[0]["Author"] == "xxx"
    assert data[0]["RootFS"]["Layers"] == child.config.diff_ids
    assert main(["--root", root, "inspect", "tomcat", "ghost"]) == 1
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 1
    assert "Error: No such image: ghost:latest" in captured.err
    assert main(["--root", root, "inspect", "ghost"]) == 1
    assert capsys.readouterr().out == "[]\n"


# ------------------------------------------------------------------------------------------------- import


def test_import_from_file_and_stdin(root, tmp_path, capsys):
    tar = layer_tar({"bin/sh": b"sh", "etc/hostname": b"mini\n"})
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(tar))
    assert main(["--root", root, "import", "-m=busybox rootfs", "-c", "ENV PATH=/bin", "-c", "CMD [\"sh\"]",
                 str(src), "mini-os:1.0"]) == 0  # fmt: skip
    image_id = capsys.readouterr().out.strip()
    store = ContentStore(root)
    assert_valid_image(store, "mini-os:1.0")
    img = catalog.resolve(store, "mini-os:1.0")
    assert img.id == image_id
    assert img.config.history[0]["comment"] == "busybox rootfs"  # the "=" of -m="..." is not kept
    assert img.config.config == {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    p = run(root, "import", "-", "from-stdin", stdin=tar)
    assert p.returncode == 0, p.stderr
    assert_valid_image(store, "from-stdin:latest")
    assert catalog.resolve(store, "from-stdin").config.history[0]["comment"] == "Imported from -"
    assert main(["--root", root, "image", "import", "--platform", "linux/arm64/v8", str(src), "arm:1"]) == 0
    capsys.readouterr()
    assert catalog.inspect(store, "arm:1")["Architecture"] == "arm64"
    assert catalog.inspect(store, "arm:1")["Variant"] == "v8"


def test_import_errors(root, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a tarball\n" * 100)
    p = run(root, "import", str(bad), "x:1")
    assert p.returncode == 1
    assert f"Error: import {bad}: not a tar archive".encode() in p.stderr  # after the plain progress lines
    p = run(root, "import", str(tmp_path / "missing.tar"), "x:1")
    assert p.returncode == 1
    assert b"No such file or directory" in p.stderr
    good = tmp_path / "ok.tar"
    good.write_bytes(layer_tar({"a": b"1"}))
    p = run(root, "import", str(good), "X:1")
    assert p.returncode == 1
    assert b"invalid reference 'X:1'" in p.stderr
    p = run(root, "import", "-c", "FROB 1", str(good), "x:1")
    assert p.returncode == 1
    assert b"invalid change 'FROB 1'" in p.stderr
    p = run(root, "import", "--platform", "linux", str(good), "x:1")
    assert p.returncode == 1
    assert b"invalid platform" in p.stderr
    assert ContentStore(root).tags() == {}


# ------------------------------------------------------------------------------------------------- df, prune


def test_df_shows_the_space_saved_by_shared_layers(root, seeded, capsys):
    assert main(["--root", root, "df"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", out[0]) == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert re.split(r"\s{2,}", out[1]) == ["Images", "3", "0", "634.9kB", "634.9kB (100%)"]
    assert re.split(r"\s{2,}", out[2]) == ["Containers", "0", "0", "0B", "0B"]
    assert out[3].startswith("Layers: 3 stored once in ")
    assert "1 shared by more than one image, saving 307.2kB (without sharing: 942.1kB)" in out[3]
    assert main(["--root", root, "df", "-v"]) == 0
    out = capsys.readouterr().out
    assert "Images space usage:" in out
    head = next(line for line in out.splitlines() if line.startswith("REPOSITORY"))
    assert re.split(r"\s{2,}", head) == [
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS",
    ]  # fmt: skip
    row = next(line for line in out.splitlines() if line.startswith("new_tomcat"))
    assert re.split(r"\s{2,}", row)[4:7] == ["614.4kB", "307.2kB", "307.2kB"]
    assert "Layers space usage:" in out
    assert sum(1 for line in out.splitlines() if line.rstrip().endswith("yes")) == 1
    assert main(["--root", root, "df", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["Images"]["SavedBySharing"] == data["Images"]["SizeWithoutSharing"] - data["Images"]["Size"] > 0


def test_prune_commands(root, seeded, capsys):
    store, _, _, hello = seeded
    make_image(store, "hello-world:latest", {"hello": b"v2"})  # the old hello-world dangles
    orphan = store.put_blob(b"orphan" * 100)
    p = run(root, "image", "prune", stdin=b"n\n")
    assert p.returncode == 0
    assert b"WARNING! This will remove all dangling images." in p.stdout
    assert store.has_blob(orphan.digest)
    assert main(["--root", root, "image", "prune", "-f"]) == 0
    out = capsys.readouterr().out
    assert f"Deleted Images:\ndeleted: {hello.id}\n" in out
    assert "Total reclaimed space: " in out
    assert not store.has_blob(orphan.digest)
    for ref in ("tomcat", "new_tomcat:1.0", "hello-world"):
        assert_valid_image(store, ref)
    assert main(["--root", root, "prune", "-a", "-f"]) == 0
    out = capsys.readouterr().out
    assert "untagged: new_tomcat:1.0" in out
    assert store.list_blobs() == []
    assert main(["--root", root, "images", "-q"]) == 0
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------- export


def test_export_needs_a_known_container(root, seeded, tmp_path):
    p = run(root, "export", "-o", str(tmp_path / "out.tar"), "no-such-container")
    assert p.returncode == 1
    assert b"Error: No such container: no-such-container" in p.stderr
    assert not (tmp_path / "out.tar").exists()


def test_help_lists_the_image_commands():
    p = subprocess.run([sys.executable, "-m", "imgcore", "--help"], capture_output=True, check=False, text=True)
    for name in ("images", "tag", "rmi", "history", "inspect", "import", "export", "df", "prune", "image"):
        assert re.search(rf"^\s+{name}\s", p.stdout, re.M), name
