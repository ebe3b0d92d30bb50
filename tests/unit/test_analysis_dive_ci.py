"""``imgcore analyze --ci`` reads dive's ``.dive-ci`` rules file as dive 0.13 does: the file's ``rules:`` apply
when the option is not given, an option wins over the file, unknown keys are ignored, and a bad value makes the
run "CI Misconfigured" with dive's lines. The expected lines are what dive 0.13 itself printed for the same
image (``dive --source docker-archive --ci`` on this image saved by imgcore, in a directory with the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcore.cli import main
from imgcore.cli._analyze_report import parse_bytes
from imgcore.store import ContentStore
from tests.images_helpers import make_image

EFFICIENCY_FAIL = ("  FAIL: lowestEfficiency: image efficiency is too low "
                   "(efficiency=0.8571428571428571 < threshold=0.99)")  # fmt: skip
USER_FAIL = ("  FAIL: highestUserWastedPercent: too many bytes wasted, relative to the user bytes added "
             "(%-user-wasted-bytes=2 > threshold=0.1)")  # fmt: skip


@pytest.fixture
def ci(store: ContentStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    base = make_image(store, "base:1", {"etc/a": b"x" * 1000, "usr/bin/tool": b"y" * 5000})
    make_image(store, "app:1", {"etc/a": b"z" * 1000}, parent=base)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def run(config: str | None, *args: str) -> tuple[int, list[str]]:
        if config is not None:
            (work / ".dive-ci").write_text(config)
        code = main(["--root", str(store.root), "analyze", "app:1", "--ci", *args])
        out, err = capsys.readouterr()
        return code, out.split("Results:\n", 1)[1].splitlines() if "Results:" in out else [err]

    return run


def test_rules_come_from_the_file_unless_an_option_is_given(ci) -> None:  # type: ignore[no-untyped-def]
    conf = (
        "rules:\n  # If the efficiency is measured below X%, mark as failed.\n  lowestEfficiency: 0.99\n"
        "  highestWastedBytes: 20MB   # a comment\n  somethingElse: 1\nother:\n  lowestEfficiency: 0.1\n"
    )
    code, lines = ci(conf)
    assert code == 1
    assert lines == [USER_FAIL, "  PASS: highestWastedBytes", EFFICIENCY_FAIL,
                     "Result:FAIL [Total:3] [Passed:1] [Failed:2] [Warn:0] [Skipped:0]"]  # fmt: skip
    code, lines = ci(None, "--lowestEfficiency", "0.5")
    assert lines[2] == "  PASS: lowestEfficiency"
    code, lines = ci(None, "--highestUserWastedPercent", "disabled", "--lowest-efficiency", "0.5")
    assert code == 0
    assert lines[-1] == "Result:PASS [Total:3] [Passed:2] [Failed:0] [Warn:0] [Skipped:1]"
    (Path(".dive-ci")).unlink()
    code, lines = ci(None)  # no file: dive's defaults
    assert lines == [USER_FAIL, "  SKIP: highestWastedBytes: rule disabled",
                     EFFICIENCY_FAIL.replace("threshold=0.99", "threshold=0.9"),
                     "Result:FAIL [Total:3] [Passed:0] [Failed:2] [Warn:0] [Skipped:1]"]  # fmt: skip


def test_a_named_file_is_read_and_must_exist(ci, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "rules.yaml"
    other.write_text("rules:\n  lowestEfficiency: '0.99'\n")
    _, lines = ci("rules:\n  lowestEfficiency: 0.1\n", "--ci-config", str(other))
    assert lines[2] == EFFICIENCY_FAIL
    code, lines = ci(None, "--ci-config", str(tmp_path / "nowhere"))
    assert code == 1
    assert lines[0].startswith(f"Error: analyze --ci-config {tmp_path / 'nowhere'}: cannot read it")


@pytest.mark.parametrize(
    ("rules", "want"),
    [
        ("lowestEfficiency: bogus", [
            "  CONFIGURED   : highestUserWastedPercent: test",
            "  CONFIGURED   : highestWastedBytes: rule disabled",
            "  MISCONFIGURED: lowestEfficiency: invalid config value ('bogus'): strconv.ParseFloat: parsing \"bogus\": "
            "invalid syntax",
        ]),
        ("lowestEfficiency: 1.5\n  highestUserWastedPercent: abc", [
            "  MISCONFIGURED: highestUserWastedPercent: invalid config value ('abc'): strconv.ParseFloat: parsing "
            "\"abc\": invalid syntax",
            "  CONFIGURED   : highestWastedBytes: rule disabled",
            "  MISCONFIGURED: lowestEfficiency: lowestEfficiency config value is outside allowed range (0-1), given "
            "'1.5'",
        ]),
        ("highestWastedBytes: 12zz", [
            "  CONFIGURED   : highestUserWastedPercent: test",
            "  MISCONFIGURED: highestWastedBytes: invalid config value ('12zz'): unhandled size name: zz",
            "  CONFIGURED   : lowestEfficiency: test",
        ]),
    ],
)  # fmt: skip
def test_bad_values_are_misconfigured_as_dive_says(ci, rules: str, want: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, lines = ci(f"rules:\n  {rules}\n")
    assert code == 1
    assert lines == [*want, "CI Misconfigured"]


def test_parse_bytes_is_go_humanize() -> None:
    assert parse_bytes("20MB") == 20_000_000
    assert parse_bytes("1.5 GiB") == 3 * 2**29
    assert parse_bytes("42") == 42
    assert parse_bytes("1,000 kB") == 1_000_000
    with pytest.raises(ValueError, match="unhandled size name: zz"):
        parse_bytes("12zz")
    with pytest.raises(ValueError, match='parsing "": invalid syntax'):
        parse_bytes("MB")
