"""``commit -c``: Dockerfile instructions applied to an image config as docker commit --change does."""

from __future__ import annotations

import pytest

from imgcore.errors import ImgcoreError
from imgcore.image.changes import apply_changes


def test_each_instruction():
    base = {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Labels": {"x": "1"}}
    cfg = apply_changes(
        base,
        [
            'CMD ["catalina.sh", "run"]',
            "ENTRYPOINT /docker-entrypoint.sh",
            "ENV A=2 B=three",
            "ENV LEGACY some value",
            "WORKDIR /usr/local/tomcat",
            "EXPOSE 8080 53/udp",
            'LABEL maintainer="x y" version=1.0',
            "USER tomcat:tomcat",
            "VOLUME /data",
            "STOPSIGNAL SIGTERM",
            "onbuild RUN true",
        ],
    )
    assert cfg["Cmd"] == ["catalina.sh", "run"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/docker-entrypoint.sh"]
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=three", "LEGACY=some value"]
    assert cfg["WorkingDir"] == "/usr/local/tomcat"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"x": "1", "maintainer": "x y", "version": "1.0"}
    assert cfg["User"] == "tomcat:tomcat"
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGTERM"
    assert cfg["OnBuild"] == ["RUN true"]
    assert base["Env"] == ["PATH=/bin", "A=1"]  # the input is not modified


def test_shell_form_cmd():
    assert apply_changes({}, ["CMD echo hi"])["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert apply_changes({}, ["CMD [broken json"])["Cmd"] == ["/bin/sh", "-c", "[broken json"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("RUN apt-get update", "RUN is not one of"),
        ("", "empty is not one of"),
        ("CMD", "requires an argument"),
        ("EXPOSE http", "bad port"),
        ("EXPOSE 70000", "bad port"),
        ("EXPOSE 80/xyz", "bad port"),
        ("ENV =x", "expected key=value"),
        ("LABEL justakey", "expected key=value"),
    ],
)
def test_bad_changes_are_refused(change, why):
    with pytest.raises(ImgcoreError, match=why):
        apply_changes({}, [change])
