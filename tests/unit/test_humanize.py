"""docker's human-readable formats: go-units' own test vectors, docker/cli's Ellipsis and tabwriter layout."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcore._humanize import (
    ago,
    ellipsis,
    format_created,
    human_duration,
    human_size,
    parse_time,
    short_id,
    since,
    tabwrite,
)

SECOND = 1
MINUTE = 60
HOUR = 3600
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
YEAR = 365 * DAY

# go-units duration_test.go (TestHumanDuration), transcribed.
DURATIONS = [
    (0.45, "Less than a second"),
    (1 * SECOND, "1 second"),
    (45 * SECOND, "45 seconds"),
    (46 * SECOND, "46 seconds"),
    (59 * SECOND, "59 seconds"),
    (60 * SECOND, "About a minute"),
    (1 * MINUTE, "About a minute"),
    (3 * MINUTE, "3 minutes"),
    (35 * MINUTE, "35 minutes"),
    (35 * MINUTE + 40, "35 minutes"),
    (45 * MINUTE, "45 minutes"),
    (45 * MINUTE + 40, "45 minutes"),
    (46 * MINUTE, "46 minutes"),
    (59 * MINUTE, "59 minutes"),
    (1 * HOUR, "About an hour"),
    (1 * HOUR + 29 * MINUTE, "About an hour"),
    (1 * HOUR + 31 * MINUTE, "2 hours"),
    (1 * HOUR + 59 * MINUTE, "2 hours"),
    (3 * HOUR, "3 hours"),
    (3 * HOUR + 29 * MINUTE, "3 hours"),
    (3 * HOUR + 31 * MINUTE, "4 hours"),
    (3 * HOUR + 59 * MINUTE, "4 hours"),
    (3 * HOUR + 60 * MINUTE, "4 hours"),
    (24 * HOUR, "24 hours"),
    (1 * DAY + 12 * HOUR, "36 hours"),
    (2 * DAY, "2 days"),
    (7 * DAY, "7 days"),
    (13 * DAY + 5 * HOUR, "13 days"),
    (2 * WEEK, "2 weeks"),
    (2 * WEEK + 4 * DAY, "2 weeks"),
    (3 * WEEK, "3 weeks"),
    (4 * WEEK, "4 weeks"),
    (4 * WEEK + 3 * DAY, "4 weeks"),
    (1 * MONTH, "4 weeks"),
    (1 * MONTH + 2 * WEEK, "6 weeks"),
    (2 * MONTH, "2 months"),
    (2 * MONTH + 2 * WEEK, "2 months"),
    (3 * MONTH, "3 months"),
    (3 * MONTH + 1 * WEEK, "3 months"),
    (5 * MONTH + 2 * WEEK, "5 months"),
    (13 * MONTH, "13 months"),
    (23 * MONTH, "23 months"),
    (24 * MONTH, "24 months"),
    (24 * MONTH + 2 * WEEK, "2 years"),
    (3 * YEAR + 2 * MONTH, "3 years"),
]


@pytest.mark.parametrize(("seconds", "text"), DURATIONS)
def test_human_duration_matches_go_units(seconds, text):
    assert human_duration(seconds) == text


def test_negative_durations_read_as_less_than_a_second():
    # an image created "in the future" (clock skew) shows as docker shows it
    assert human_duration(-30) == "Less than a second"


# go-units size_test.go (TestHumanSize, precision 4) and docker images' precision 3.
@pytest.mark.parametrize(
    ("size", "precision", "text"),
    [
        (1000, 4, "1kB"),
        (1024, 4, "1.024kB"),
        (1000000, 4, "1MB"),
        (1048576, 4, "1.049MB"),
        (2 * 1000**2, 4, "2MB"),
        (3.42 * 1000**3, 4, "3.42GB"),
        (5.372 * 1000**4, 4, "5.372TB"),
        (2.22 * 1000**5, 4, "2.22PB"),
        (10000000000000 * 1000**5, 4, "1e+04YB"),
        (0, 3, "0B"),
        (999, 3, "999B"),
        (13256, 3, "13.3kB"),  # hello-world, as in the seed's `docker images`
        (460_000_000, 3, "460MB"),
        (455_123_456, 3, "455MB"),
        (1_020_000_000, 3, "1.02GB"),
        (1_024_000_000, 3, "1.02GB"),
        (7_331_000, 3, "7.33MB"),
        (999_999, 3, "1e+03kB"),  # Go's %.3g rounds up into exponent form; docker really prints this
        (77_800_000, 3, "77.8MB"),
    ],
)
def test_human_size_matches_go_units(size, precision, text):
    assert human_size(size, precision) == text


@given(st.integers(min_value=0, max_value=10**18))
def test_human_size_has_three_significant_digits_and_a_decimal_unit(n):
    text = human_size(n)
    number = text.rstrip("BkMGTPEZY")
    unit = text[len(number) :]
    assert unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    value = float(number)
    scale = 1000 ** ["B", "kB", "MB", "GB", "TB", "PB", "EB"].index(unit)
    assert abs(value * scale - n) <= 0.005 * max(n, 1) + 0.5 * scale / 100


def test_short_id_and_ellipsis():
    assert short_id("sha256:5a4ee0c8ccbe1234567890") == "5a4ee0c8ccbe"
    assert short_id("5a4ee0c8ccbe1234567890") == "5a4ee0c8ccbe"
    assert short_id("<missing>") == "<missing>"
    cmd = '/bin/sh -c #(nop)  CMD ["catalina.sh" "run"]'
    assert ellipsis(cmd, 45) == cmd  # 44 characters fit
    long = "/bin/sh -c set -eux; apt-get update; apt-get install -y --no-install-recommends curl"
    out = ellipsis(long, 45)
    assert len(out) == 45
    assert out.endswith("…")
    assert out[:44] == long[:44]
    assert ellipsis("日本語のテキスト", 5) == "日本…"  # wide characters take two cells
    assert ellipsis("abc", 1) == "a"
    assert ellipsis("abc", 0) == ""


def test_tabwrite_pads_like_docker_cli():
    out = tabwrite(
        [
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            ["new_tomcat", "1.0", "85edcedcd5cf", "6 seconds ago", "460MB"],
            ["hello-world", "latest", "d2c94e258dcb", "12 months ago", "13.3kB"],
        ]
    )
    assert out.splitlines() == [
        "REPOSITORY    TAG       IMAGE ID       CREATED         SIZE",
        "new_tomcat    1.0       85edcedcd5cf   6 seconds ago   460MB",
        "hello-world   latest    d2c94e258dcb   12 months ago   13.3kB",
    ]
    assert tabwrite([]) == ""


def test_times():
    t = parse_time("2023-05-04T17:37:03.872958712Z")
    assert t == dt.datetime(2023, 5, 4, 17, 37, 3, 872958, tzinfo=dt.UTC)
    assert parse_time("2023-05-04T19:37:03+02:00") == dt.datetime(2023, 5, 4, 17, 37, 3, tzinfo=dt.UTC)
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    now = dt.datetime(2023, 5, 16, 17, 37, 3, tzinfo=dt.UTC)
    assert since(t, now) == "12 days ago"  # docker drops the fraction (time.Unix(created, 0))
    assert ago("2023-05-04T17:37:03Z", now) == "12 days ago"
    assert since(now - dt.timedelta(seconds=6), now) == "6 seconds ago"
    assert since(None) == "N/A"
    assert ago("garbage") == "N/A"
    assert format_created(t) == "2023-05-04T17:37:03Z"


def test_printable_escapes_terminal_controls() -> None:
    from imgcore._humanize import printable

    assert printable("ok \x1b]0;pwned\x07 \x9b31m") == "ok \\x1b]0;pwned\\x07 \\x9b31m"
    assert printable("tabs\tstay, unicode ü stays") == "tabs\tstay, unicode ü stays"
