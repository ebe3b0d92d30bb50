"""Docker ``--format`` templates behave as Go's text/template with docker/cli's functions.

Expected outputs come from docker's documentation (https://docs.docker.com/engine/cli/formatting/,
https://docs.docker.com/reference/cli/docker/inspect/), Go's text/template documentation
(https://pkg.go.dev/text/template), fmt's (https://pkg.go.dev/fmt) and the Go sources they describe
(text/template/exec.go, funcs.go, fmt/print.go, strconv/ftoa.go, encoding/json, docker/cli templates.go and
formatter.go). No Go toolchain is installed here, so they are not cross-checked against a Go binary.
"""

from __future__ import annotations

import json
import math
import pickle
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcore._gotemplate import NO_VALUE, Template, _cached, go_json, go_sprint, render, render_rows, tabwrite
from imgcore.errors import ImgcoreError, InvalidTemplate

# A container as `docker inspect` shows it (trimmed to the fields the examples use).
CONTAINER = {
    "Id": "d2cc496561d6d520cbc0236b4ba88c362c446a7619992123f11c809cded25b47",
    "Name": "/Web-App",
    "Args": ["-g", "daemon off;"],
    "Image": "nginx:1.25",
    "LogPath": "/var/lib/docker/containers/d2cc/d2cc-json.log",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0, "Health": None},
    "Config": {
        "Hostname": "d2cc496561d6",
        "Image": "nginx:1.25",
        "Env": ["PATH=/usr/bin", "NGINX_VERSION=1.25.3"],
        "Labels": {"com.example.version": "1.0", "maintainer": "NGINX <docker-maint@nginx.com>"},
        "Cmd": None,
    },
    "NetworkSettings": {
        "IPAddress": "172.17.0.2",
        "MacAddress": "02:42:ac:11:00:02",
        "Ports": {
            "443/tcp": None,
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
            "8443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9443"}],
        },
        "Networks": {
            "bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"},
        },
    },
    "Mounts": [],
    "SizeRw": 1000000.0,
}


# ------------------------------------------------------------------------------------------------ docker docs


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # docker inspect reference, "Examples"
        ("{{.NetworkSettings.IPAddress}}", "172.17.0.2"),
        ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.2"),
        ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:02"),
        ("{{.LogPath}}", "/var/lib/docker/containers/d2cc/d2cc-json.log"),
        ("{{.Config.Image}}", "nginx:1.25"),
        (
            "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
            None,  # 443/tcp has no binding: index of nil fails, as it does in docker (see the error test)
        ),
        (
            "{{range $p, $conf := .NetworkSettings.Ports}}{{with $conf}} {{$p}} -> {{(index $conf 0).HostPort}}"
            "{{end}}{{end}}",
            " 80/tcp -> 8080 8443/tcp -> 9443",
        ),
        # "Format command and log output"
        ('{{join .Args " , "}}', "-g , daemon off;"),
        ("{{json .Mounts}}", "[]"),
        ("{{lower .Name}}", "/web-app"),
        ('{{split .Image ":"}}', "[nginx 1.25]"),
        ("{{title .Name}}", "/Web-App"),
        ("{{upper .Name}}", "/WEB-APP"),
        ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "172.17.0.2\n"),
        ('{{index .Config.Labels "com.example.version"}}', "1.0"),
        ('{{index .Config.Labels "not.there"}}', ""),  # a map[string]string's zero value
        ('{{if eq .State.Status "running"}}up {{.State.Pid}}{{else}}down{{end}}', "up 4242"),
        ("{{.State.Running}} {{.State.ExitCode}}", "true 0"),
    ],
)
def test_docker_inspect_examples(template, expected):
    if expected is None:
        with pytest.raises(InvalidTemplate, match="index of untyped nil"):
            render(template, CONTAINER)
    else:
        assert render(template, CONTAINER) == expected


def test_json_of_config_is_compact_in_order_and_keeps_html_characters():
    out = render("{{json .Config}}", CONTAINER)
    assert out == (
        '{"Hostname":"d2cc496561d6","Image":"nginx:1.25","Env":["PATH=/usr/bin","NGINX_VERSION=1.25.3"],'
        '"Labels":{"com.example.version":"1.0","maintainer":"NGINX <docker-maint@nginx.com>"},"Cmd":null}'
    )
    assert json.loads(out) == CONTAINER["Config"]


# ------------------------------------------------------------------------------------------------ text/template


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("plain text", None, "plain text"),
        ("{{.}}", "x", "x"),
        ("{{.}}", None, "<no value>"),
        ("{{$}}", 7, "7"),
        ("{{.A.B.C}}", {"A": {"B": {"C": "deep"}}}, "deep"),
        ("{{.missing}}", {}, "<no value>"),
        ("{{.missing.deeper}}", {}, "<no value>"),
        ("{{.n}}|{{print .n}}", {"n": None}, "<no value>|<nil>"),
        ("{{.l}}", {"l": ["a", 1, None, True, 1.5]}, "[a 1 <nil> true 1.5]"),
        ("{{.}}", {"b": 2, "a": [1, {"z": 0, "y": None}]}, "map[a:[1 map[y:<nil> z:0]] b:2]"),
        ("{{.}}", [], "[]"),
        ("{{.}}", {}, "map[]"),
        # floats as Go's %v: shortest repr, exponent below 1e-4 and from 1e21... no: from 1e6 (strconv 'g', -1)
        ("{{.}}", 1000000.0, "1e+06"),
        ("{{.}}", 123456.0, "123456"),
        ("{{.}}", 1234567.0, "1.234567e+06"),
        ("{{.}}", 0.0001, "0.0001"),
        ("{{.}}", 0.00001, "1e-05"),
        ("{{.}}", 0.1 + 0.2, "0.30000000000000004"),
        ("{{.}}", -0.0, "-0"),
        ("{{.}}", float("inf"), "+Inf"),
        ("{{.}}", 10**20, "100000000000000000000"),
        # literals
        ('{{"a\\tb\\u00e9\\x41"}}', None, "a\tbéA"),
        ("{{`raw \\n {{ }}`}}", None, "raw \\n {{ }}"),
        ("{{'a'}} {{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{-3}} {{+4}}", None, "97 31 15 15 5 1000 -3 4"),
        ("{{1.5}} {{1e3}} {{.5}} {{0x1p-2}}", None, "1.5 1000 0.5 0.25"),
        ("{{true}} {{false}}", None, "true false"),
        ('{{"}}"}}', None, "}}"),
        # comments and trim markers
        ("a {{/* comment */}} b", None, "a  b"),
        ("a {{- /* comment */ -}} b", None, "ab"),
        ("a\n\t {{- .}} \n b", "X", "aX \n b"),
        ("a {{. -}}\n\t b", "X", "a Xb"),
        ("{{-3}}", None, "-3"),  # no space after the dash: a number, not a trim marker
        # variables
        ("{{$x := .}}{{$x}}{{$x = 2}}{{$x}}", 1, "12"),
        ("{{with $x := .A}}{{$x}}{{end}}", {"A": "in"}, "in"),
        ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", None, "21"),
        ("{{range .}}{{$}}{{end}}", ["a"], "[a]"),
        # if / else if / else, with / else with
        ("{{if .}}yes{{else}}no{{end}}", "", "no"),
        ("{{if .}}yes{{else}}no{{end}}", 0.0, "no"),
        ("{{if .}}yes{{else}}no{{end}}", {}, "no"),
        ("{{if .}}yes{{else}}no{{end}}", [0], "yes"),
        ("{{if .a}}A{{else if .b}}B{{else}}C{{end}}", {"a": 0, "b": 1}, "B"),
        ("{{if .a}}A{{else if .b}}B{{else}}C{{end}}", {}, "C"),
        ("{{with .a}}{{.}}{{else with .b}}b={{.}}{{else}}none{{end}}", {"b": 2}, "b=2"),
        ("{{with .a}}{{.}}{{else}}none{{end}}", {"a": ""}, "none"),
        # range
        ("{{range .}}[{{.}}]{{end}}", ["a", "b"], "[a][b]"),
        ("{{range $i, $e := .}}{{$i}}={{$e}} {{end}}", ["a", "b"], "0=a 1=b "),
        ("{{range $e := .}}{{$e}}{{end}}", ["a", "b"], "ab"),
        ("{{range $k, $v := .}}{{$k}}:{{$v}} {{end}}", {"b": 2, "a": 1, "c": 3}, "a:1 b:2 c:3 "),
        ("{{range .}}x{{else}}empty{{end}}", [], "empty"),
        ("{{range .}}x{{else}}empty{{end}}", None, "empty"),
        ("{{range .n}}x{{else}}empty{{end}}", {"n": None}, "empty"),
        ("{{range 3}}{{.}}{{end}}", None, "012"),
        ("{{range .}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}", [1, 2, 3, 4, 5], "13"),
        # pipelines and parentheses
        ('{{. | printf "%s!"}}', "hi", "hi!"),
        ('{{"a" | printf "%s-%s" "b"}}', None, "b-a"),
        ('{{printf "%d" (len .)}}', [1, 2, 3], "3"),
        ("{{(index . 1).x}}", [{}, {"x": "y"}], "y"),
        ("{{(.).x}}", {"x": "self"}, "self"),
        # define / template / block
        ('{{define "T"}}<{{.}}>{{end}}{{template "T" "a"}}{{template "T" .}}', "b", "<a><b>"),
        ('{{template "T"}}{{define "T"}}{{.}}{{end}}', "x", "<no value>"),
        ('{{block "B" .}}[{{.}}]{{end}}', "x", "[x]"),
    ],
)
def test_go_semantics(template, data, expected):
    assert Template(template).execute(data) == expected


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ('{{and 1 0 2}} {{and 1 2}} {{or 0 "" 3}} {{or 0 false}}', None, "0 2 3 false"),
        ("{{and .a .a.b}}", {}, "<no value>"),  # and short-circuits: .a.b is not evaluated on a missing .a
        ("{{not 0}} {{not 1}} {{not .missing}}", {}, "true false true"),
        ("{{len .}} {{len .s}} {{len .m}}", {"s": "héllo", "m": {"a": 1}}, "2 6 1"),  # len counts UTF-8 bytes
        ("{{index . 1}} {{index .}}", ["a", "b"], "b [a b]"),
        ("{{index . 1 0}}", [[1], [2, 3]], "2"),
        ('{{index . "a" "b"}}', {"a": {"b": "c"}}, "c"),
        ('{{index . "x"}}', {"a": 1}, "<no value>"),  # a map[string]interface{}'s zero value is nil
        ("{{index . 0}}", "abc", "97"),  # a string indexes to a byte
        ("{{slice . 1 3}} {{slice . 1}} {{slice .}}", "abcd", "bc bcd abcd"),
        ("{{slice . 1 2}}", [1, 2, 3], "[2]"),
        ('{{eq 1 1}} {{eq 1 2 3 1}} {{eq "a" "a"}} {{eq .x nil}} {{eq .x 1}}', {}, "true true true true false"),
        ('{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1.5 2.5}}', None, "true true true true false"),
        ('{{print 1 2 "a" "b" 3}}', None, "1 2ab3"),  # spaces only between operands that are not strings
        ('{{println 1 "a"}}', None, "1 a\n"),
        ("{{html \"<a href='x'>&\"}}", None, "&lt;a href=&#39;x&#39;&gt;&amp;"),
        ('{{js "a\'b<c"}}', None, "a\\'b\\u003Cc"),
        ('{{urlquery "a b&c/é"}}', None, "a+b%26c%2F%C3%A9"),
        # docker/cli templates
        ('{{join . ", "}}', ["a", "b"], "a, b"),
        ('{{join .n ","}}', {"n": None}, ""),
        ('{{split . ","}}|{{len (split . ",")}}', "a,b,", "[a b ]|3"),
        ('{{split . ""}}', "abc", "[a b c]"),
        ("{{title .}}", "hello wORLD foo_bar x-y", "Hello WORLD Foo_bar X-Y"),
        ("{{upper .}} {{lower .}}", "Straße", "STRAßE straße"),
        ('[{{pad . 2 1}}][{{pad "" 2 1}}]', "x", "[  x ][]"),
        ("{{truncate . 3}}|{{truncate . 10}}", "abcdef", "abc|abcdef"),
        ("{{json .}}", {"a": "<&>", "b": [1, 2.5, None, True]}, '{"a":"<&>","b":[1,2.5,null,true]}'),
        ("{{json .}}", float("nan"), ""),  # docker ignores the encoder's error
        ("{{json .missing}}", {}, "null"),
    ],
)
def test_functions(template, data, expected):
    assert render(template, data) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [  # rows of Go's text/template exec_test.go that need no Go struct
        ("{{print 1234}} {{print 12_34}} {{print 0b101}} {{print 0o7}} {{print 0777}}", "1234 1234 5 7 511"),
        ("{{print 0x123}} {{print 0x1_23}} {{print 123.4}} {{print 0_0_1_2_3.4}}", "291 291 123.4 123.4"),
        ("{{print +0x1.ep+2}} {{print +0x_1.e_0p+0_2}} {{print +0X1.EP+2}}", "7.5 7.5 7.5"),
        ("{{print 1_2_3_4 7.5_00_00_00}} {{print 1234 0x0_1.e_0p+02}}", "1234 7.5 1234 7.5"),
        ('{{printf "%04x" 127}} {{printf "%g" 3.5}} {{printf "%s" "hello"}}', "007f 3.5 hello"),
        ('{{html "<script>alert(\\"XSS\\");</script>"}}', "&lt;script&gt;alert(&#34;XSS&#34;);&lt;/script&gt;"),
        ('{{"http://www.example.org/"|urlquery}}', "http%3A%2F%2Fwww.example.org%2F"),
        ("{{js `It'd be nice.`}}", "It\\'d be nice."),
        ("{{not true}} {{not false}}", "false true"),
        ("{{and false 0}} {{and 1 0}} {{and 0 true}} {{and 1 1}}", "false 0 0 1"),
        ("{{or 0 0}} {{or 1 0}} {{or 0 true}} {{or 1 1}}", "0 1 true 1"),
        ("{{eq 1 1}} {{eq 1 2}} {{ne 1 1}} {{lt 1 2}}", "true false false true"),
        ("{{le 2 1}} {{gt 2 1}} {{ge 1 2}}", "false true false"),
        ('{{eq "xy" "xy"}} {{lt "xy" "xyz"}} {{eq 1.5 1.5}}', "true true true"),
        ("{{lt 1.5 2.5}} {{eq true true}}", "true true"),
        ("{{with $x := 3}}{{$x}}{{end}} {{$y := 4}}{{$y}}", "3 4"),
        ("{{range $x := 3}}{{$x}}{{end}}", "012"),
    ],
)
def test_go_exec_test_rows(template, expected):
    assert render(template, None) == expected


@pytest.mark.parametrize(
    "template",
    [  # text/template's documentation, "Examples": each prints "output" with its quotes
        '{{"\\"output\\""}}',
        '{{`"output"`}}',
        '{{printf "%q" "output"}}',
        '{{"output" | printf "%q"}}',
        '{{printf "%q" (print "out" "put")}}',
        '{{"put" | printf "%s%s" "out" | printf "%q"}}',
        '{{"output" | printf "%s" | printf "%q"}}',
        '{{with "output"}}{{printf "%q" .}}{{end}}',
        '{{with $x := "output" | printf "%q"}}{{$x}}{{end}}',
        '{{with $x := "output"}}{{printf "%q" $x}}{{end}}',
        '{{with $x := "output"}}{{$x | printf "%q"}}{{end}}',
    ],
)
def test_go_doc_examples(template):
    assert render(template, None) == '"output"'


def test_go_doc_trim_markers():
    assert render("{{23 -}} < {{- 45}}", None) == "23<45"


def test_methods_in_data():
    """A callable value is a method: docker's ``{{.Label "name"}}`` for ps and images."""
    row = {"Names": "web", "Label": lambda name: {"tier": "front"}.get(name, "")}
    assert render('{{.Names}} {{.Label "tier"}}|{{.Label "none"}}', row) == "web front|"
    assert render("{{json .}} {{.}}", row) == '{"Names":"web"} map[Names:web]'
    with pytest.raises(InvalidTemplate, match=r"error calling Label: .*argument"):
        render("{{.Label}}", row)


# ------------------------------------------------------------------------------------------------ printf


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%s|%v|%q|%x|%X", ("hé",) * 5, 'hé|hé|"hé"|68c3a9|68C3A9'),
        ("%-10s|%10s|%.2s|%5.1s|", ("abc",) * 4, "abc       |       abc|ab|    a|"),
        ("%d|%5d|%-5d|%05d|%+d|% d|%x|%X|%#x|%o|%#o|%O|%b|%c|%q|%U", (42,) * 16, None),
        ("%.2f|%8.3f|%-8.1f|%e|%E|%g|%G|%.3g|%v", (3.14159,) * 9, None),
        ("%v %v %v", (1e21, 1e20, 1e-7), "1e+21 1e+20 1e-07"),
        ("%t %v %5t", (True, False, True), "true false  true"),
        ("%v %d", ([1, "a"], [1, 2]), "[1 a] [1 2]"),
        ("%v", ({"b": 1, "a": [None]},), "map[a:[<nil>] b:1]"),
        (
            "%T %T %T %T %T %T",
            (1, 1.5, "s", True, None, {"a": 1}),
            "int float64 string bool <nil> map[string]interface {}",
        ),
        ("%#v %#v", ("a", [1, "b"]), '"a" []interface {}{1, "b"}'),
        ("%[2]s %[1]s", ("a", "b"), "b a"),
        ("%*d|%-*d", (4, 7, 4, 7), "   7|7   "),
        ("%d", ("x",), "%!d(string=x)"),
        ("%s", (1,), "%!s(int=1)"),
        ("%d %d", (1,), "1 %!d(MISSING)"),
        ("%d", (1, "x"), "1%!(EXTRA string=x)"),
        ("%z", (1,), "%!z(int=1)"),
        ("100%%", (), "100%"),
        ("%", (), "%!(NOVERB)"),
        ("%d", (None,), "%!d(<nil>)"),
        ("%v|%5v", (None, None), "<nil>|<nil>"),
        ("%.0f %.0f %.1f", (0.5, 1.5, 0.25), "0 2 0.2"),  # round half to even, as strconv does
        ("%6.2f|%06.2f|%+.1e", (-1.5, -1.5, 12345.0), " -1.50|-01.50|+1.2e+04"),
        ("%f %v", (float("inf"), float("nan")), "+Inf NaN"),
    ],
)
def test_printf(fmt, args, expected):
    if expected is None:
        expected = {
            "%d": "42|   42|42   |00042|+42| 42|2a|2A|0x2a|52|052|0o52|101010|*|'*'|U+002A",
            "%.": "3.14|   3.142|3.1     |3.141590e+00|3.141590E+00|3.14159|3.14159|3.14|3.14159",
        }[fmt[:2]]
    assert (
        render(
            "{{printf .f " + " ".join(f"(index .a {i})" for i in range(len(args))) + "}}", {"f": fmt, "a": list(args)}
        )
        == expected
    )


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("template", "data", "message", "line", "column"),
    [
        ("{{.Name.First}}", {"Name": "x"}, "can't evaluate field First in type string", 1, 2),
        ("a\nb {{.x.y}}", {"x": None}, "nil pointer evaluating interface {}.y", 2, 4),
        ("{{.x}}", 3, "can't evaluate field x in type int", 1, 2),
        ("{{nosuch .}}", None, 'function "nosuch" not defined', 1, 2),
        ("{{.Name", None, "unclosed action", 1, 7),
        ("{{if .}}x", None, "unexpected EOF", 1, 9),
        ("{{end}}", None, "unexpected {{end}}", 1, 2),
        ("{{else}}", None, "unexpected {{else}}", 1, 2),
        ("{{$y}}", None, 'undefined variable "$y"', 1, 2),
        ("{{if}}{{end}}", None, "missing value for if", 1, 4),
        ("{{}}", None, "missing value for command", 1, 2),
        ("{{nil}}", None, "nil is not a command", 1, 2),
        ("{{. | 3}}", None, "non executable command in pipeline stage 2", 1, 6),
        ("{{break}}", None, "{{break}} outside {{range}}", 1, 2),
        ("{{(1}}", None, "unclosed left paren", 1, 4),
        ("{{1)}}", None, "unexpected right paren", 1, 3),
        ("{{.a-b}}", None, "bad character U+002D '-'", 1, 4),
        ('{{"abc}}', None, "unterminated quoted string", 1, 2),
        ("{{/* x }}", None, "unclosed comment", 1, 0),
        ("{{/* x */ .}}", None, "comment ends before closing delimiter", 1, 0),
        ("{{1x}}", None, 'bad number syntax: "1x"', 1, 2),
        ('{{"a".b}}', None, "unexpected . after term", 1, 2),
        ("{{@}}", None, 'unexpected "@" in command', 1, 2),
        ("{{.x 1}}", {"x": 1}, "x is not a method but has arguments", 1, 2),
        ("{{lower 3}}", None, "expected string; found 3", 1, 8),
        ("{{lower .}}", 3, "wrong type for value; expected string; got int", 1, 8),
        ("{{lower .x}}", {}, "invalid value; expected string", 1, 8),
        ("{{truncate . 1.5}}", "x", "expected integer; found 1.5", 1, 13),
        ('{{join . ","}}', [1], "expected []string; got []interface {}", 1, 7),
        ("{{len 3}}", None, "error calling len: len of type int", 1, 2),
        ("{{pad . -1 0}}", "x", "error calling pad: strings: negative Repeat count", 1, 2),
        ("{{truncate . -1}}", "x", "error calling truncate: slice bounds out of range", 1, 2),
        ("{{index . 2}}", [1], "error calling index: index out of range: 2", 1, 2),
        ('{{index . "k"}}', [1], "cannot index slice/array with type string", 1, 2),
        ("{{index .x 0}}", {"x": None}, "index of untyped nil", 1, 2),
        ("{{slice . 2 1}}", "abc", "invalid slice index: 2 > 1", 1, 2),
        ("{{eq 1 1.0}}", None, "incompatible types for comparison", 1, 2),
        ("{{eq . .}}", [1], "non-comparable type", 1, 2),
        ("{{lt true false}}", None, "invalid type for comparison", 1, 2),
        ("{{eq 1}}", None, "missing argument for comparison", 1, 2),
        ("{{lower}}", None, "wrong number of args for lower: want 1 got 0", 1, 2),
        ("{{and}}", None, "wrong number of args for and: want at least 1 got 0", 1, 2),
        ("{{range .}}{{end}}", "str", "range can't iterate over str", 1, 2),
        ("{{range $i, $e := 3}}{{end}}", None, "can't use 3 to iterate over more than one variable", 1, 2),
        ('{{template "none"}}', None, 'template "none" not defined', 1, 2),
        ("{{.}}", len, "can't print . of type func", 1, 0),
        ("{{.f}}", {"f": len}, "error calling f: len() takes exactly one argument", 1, 2),
        ("{{. 1}}", None, "can't give argument to non-function .", 1, 2),
    ],
)
def test_errors_say_where_and_what(template, data, message, line, column):
    with pytest.raises(InvalidTemplate) as info:
        Template(template).execute(data)
    e = info.value
    assert message in str(e)
    assert (e.line, e.column) == (line, column), str(e)
    assert e.template == template
    assert str(e).startswith("template ")
    assert isinstance(e, ImgcoreError)
    assert isinstance(e, ValueError)


def test_parse_errors_are_raised_before_execution():
    with pytest.raises(InvalidTemplate, match="function"):
        Template("{{if .}}{{nosuch}}{{end}}")  # never executed: still an error, as Go's parser reports it


def test_missing_key_options():
    assert Template("{{.a}}", missing_key="zero").execute({"b": "x"}) == ""  # map[string]string
    assert Template("{{.a}}", missing_key="zero").execute({"b": 1}) == "<no value>"  # nil interface, dug out
    with pytest.raises(InvalidTemplate, match='map has no entry for key "a"'):
        Template("{{.a}}", missing_key="error").execute({"b": 1})
    with pytest.raises(ValueError, match="missing_key"):
        Template("x", missing_key="bogus")


def test_deep_template_recursion_is_an_error_not_a_crash():
    with pytest.raises(InvalidTemplate, match="exceeded maximum template depth"):
        render('{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}', 1)
    with pytest.raises(InvalidTemplate, match="nested too deeply"):
        render("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}", None)


# ------------------------------------------------------------------------------------------------ json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        ([True, False, 0, -7, 10**20], "[true,false,0,-7,100000000000000000000]"),
        ([1.0, 1.5, -0.0, 1e20, 1e21, 1e-6, 1e-7, 1.5e-10, 123456789.0], None),
        ('<a href="x">&\'\\</a>', '"<a href=\\"x\\">&\'\\\\</a>"'),
        ("\n\t\r\b\f\x00\x1f\x7f", '"\\n\\t\\r\\b\\f\\u0000\\u001f\x7f"'),
        ("é\u2028\u2029😀", '"é\\u2028\\u2029😀"'),
        ("\ud800", '"\ufffd"'),
        ({"b": 1, "a": {}}, '{"b":1,"a":{}}'),
    ],
)
def test_go_json(value, expected):
    if expected is None:  # Go's float encoding: 'f' form, 'e' below 1e-6 and from 1e21, e-07 cleaned to e-7
        expected = "[1,1.5,-0,100000000000000000000,1e+21,0.000001,1e-7,1.5e-10,123456789]"
    assert go_json(value) == expected


def test_go_json_rejects_what_go_rejects():
    with pytest.raises(ValueError, match="unsupported value"):
        go_json(math.inf)
    with pytest.raises(TypeError, match="unsupported type"):
        go_json({1, 2})


def test_go_sprint():
    assert go_sprint({"k": [1, {"a": None}], "b": True}) == "map[b:true k:[1 map[a:<nil>]]]"
    assert go_sprint(None) == "<nil>"
    assert go_sprint(NO_VALUE) == "<nil>"


# ------------------------------------------------------------------------------------------------ rows, table


IMAGES = [
    {"ID": "77af4d6b9913", "Repository": "<none>", "Tag": "<none>", "Size": "1.09GB", "CreatedSince": "19 hours ago"},
    {"ID": "b6fa739cedf5", "Repository": "committ", "Tag": "latest", "Size": "1.09GB", "CreatedSince": "2 days ago"},
    {
        "ID": "78a85c484f71",
        "Repository": "ubuntu-with-a-long-name",
        "Tag": "22.04",
        "Size": "77.8MB",
        "CreatedSince": "",
    },
]
HEADERS = {"ID": "IMAGE ID", "CreatedSince": "CREATED"}


def test_table_with_headers_and_docker_alignment():
    out = render_rows(r"table {{.ID}}\t{{.Repository}}\t{{.Tag}}\t{{.CreatedSince}}", IMAGES, HEADERS)
    assert out == (
        "IMAGE ID       REPOSITORY                TAG       CREATED\n"
        "77af4d6b9913   <none>                    <none>    19 hours ago\n"
        "b6fa739cedf5   committ                   latest    2 days ago\n"
        "78a85c484f71   ubuntu-with-a-long-name   22.04     \n"
    )


def test_table_header_functions_keep_the_column_name():
    """docker/cli's HeaderFunctions: json, upper, lower, title, split, join, truncate return the header; pad pads it."""
    out = render_rows(r"table {{lower .ID}}\t{{truncate .Repository 3}}\t{{pad .Tag 1 1}}|", IMAGES[:1], HEADERS)
    assert out.splitlines() == ["IMAGE ID       REPOSITORY    TAG |", "77af4d6b9913   <no           <none> |"]


def test_table_without_rows_prints_the_header_and_plain_formats_print_nothing():
    assert render_rows(r"table {{.ID}}\t{{.Size}}", [], HEADERS) == "IMAGE ID   SIZE\n"
    assert render_rows("{{.ID}}", []) == ""


def test_json_format_is_one_object_per_line():
    out = render_rows("json", IMAGES)
    assert [json.loads(line) for line in out.splitlines()] == IMAGES
    assert out.endswith("}\n")


def test_plain_format_is_trimmed_and_shell_escapes_are_turned_into_tabs_and_newlines():
    out = render_rows(r"  {{.ID}}:\t{{.Tag}}\n  ", IMAGES[:2])
    assert out == "77af4d6b9913:\t<none>\n\nb6fa739cedf5:\tlatest\n\n"
    assert render(r"{{.}}\t", "x") == "x\\t"  # inspect -f does not translate


def test_render_rows_reports_bad_templates_once():
    with pytest.raises(InvalidTemplate, match="can't evaluate field Nope in type string"):
        render_rows("{{.ID.Nope}}", IMAGES)


# ------------------------------------------------------------------------------------------------ tabwriter


def test_tabwriter_elastic_columns_as_in_go_docs():
    # text/tabwriter's package doc: b and c are in distinct columns, d and e are in none
    text = "aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n"
    assert tabwrite(text, minwidth=0, padding=1, padchar=".") == ("aaaa.bbb.d\naa...b...dd\na....\naa...cccc.eee\n")


def test_tabwriter_tab_padding_as_in_go_example():
    # text/tabwriter ExampleWriter_Init: NewWriter(os.Stdout, 0, 8, 0, '\t', 0)
    text = "a\tb\tc\td\t.\n123\t12345\t1234567\t123456789\t.\n"
    assert tabwrite(text, minwidth=0, tabwidth=8, padding=0, padchar="\t") == (
        "a\tb\tc\td\t\t.\n123\t12345\t1234567\t123456789\t.\n"
    )


def test_tabwriter_counts_wide_characters_twice_and_keeps_a_trailing_line():
    assert tabwrite("名前\tx\nab\ty\n") == "名前      x\nab        y\n"
    assert tabwrite("a\tb\nno newline") == "a         b\nno newline"


# ------------------------------------------------------------------------------------------------ properties

_no_action = st.text().filter(lambda s: "{{" not in s)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _same(decoded, value):
    """Equal as JSON values: Go writes an integral float such as 5.896965551277863e16 as 58969655512778630."""
    if isinstance(value, float):
        return isinstance(decoded, (int, float)) and float(decoded) == value
    if isinstance(value, list):
        return isinstance(decoded, list) and len(decoded) == len(value) and all(map(_same, decoded, value))
    if isinstance(value, dict):
        return (
            isinstance(decoded, dict)
            and decoded.keys() == value.keys()
            and all(_same(decoded[k], v) for k, v in value.items())
        )
    return type(decoded) is type(value) and decoded == value


@given(_no_action)
def test_text_without_actions_is_unchanged(text):
    assert render(text, None) == text


@given(_json_values)
def test_json_round_trips(value):
    out = render("{{json .}}", value)
    assert _same(json.loads(out), value)
    assert "\n" not in out


@given(st.lists(st.lists(st.text(alphabet="abc xyz-", max_size=12), min_size=2, max_size=2), min_size=1, max_size=6))
def test_table_columns_line_up(cells):
    rows = [{"A": a, "B": b} for a, b in cells]
    lines = render_rows(r"table {{.A}}\t{{.B}}", rows).split("\n")
    assert lines.pop() == ""
    width = max(10, max(len(a) for a, _ in [("A", ""), *cells]) + 3)  # minwidth 10, padding 3
    for line, (a, b) in zip(lines, [("A", "B"), *cells], strict=True):
        assert line == a.ljust(width) + b


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_printf_integer_verbs_match_python(n):
    out = render('{{printf "%d|%x|%X|%o|%b|%+d|%8d|%-8d|" . . . . . . . .}}', n)
    assert out == f"{n}|{n:x}|{n:X}|{n:o}|{n:b}|{n:+d}|{n:8d}|{n:<8d}|"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_printing_round_trips_and_uses_exponents_as_go(f):
    out = render("{{.}}", f)
    assert float(out) == f
    exp = Decimal(repr(abs(f))).adjusted() if f else 0  # the exponent of the shortest decimal form
    assert ("e" in out) == (exp < -4 or exp >= 6)  # strconv 'g' with shortest precision decides at 6 digits


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    )
)
def test_go_json_matches_python_json_where_go_and_python_agree(value):
    # Go and Python escape the same characters, except that Go also escapes U+2028 and U+2029
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert go_json(value) == expected.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def test_a_template_keeps_no_state_between_executions():
    t = Template('{{$x := .}}{{range .}}{{$x = "changed"}}{{end}}{{$x}}')
    assert [t.execute(d) for d in (["a"], [], ["b", "c"])] == ["changed", "[]", "changed"]
    t = Template("{{.A}}")
    assert [t.execute(d) for d in ({"A": "s"}, {"A": 1}, {}, {"A": None})] == ["s", "1", "<no value>", "<no value>"]


def test_fast_field_path_agrees_with_the_general_one():
    headers = render_rows(r"table {{.A}}\t{{.B}}", [], {"A": "COL A"})
    assert headers == "COL A     B\n"  # the header mapping's default (upper-cased name) is not skipped
    with pytest.raises(InvalidTemplate, match='map has no entry for key "B"'):
        render_rows("{{.A}}{{.B}}", [{"A": "x"}], missing_key="error")


def test_render_caches_parsed_templates():
    assert render("{{.}}", 1) == render("{{.}}", 1) == "1"
    assert _cached("{{.}}", "default") is _cached("{{.}}", "default")


def test_invalid_template_pickles_with_its_position():
    with pytest.raises(InvalidTemplate) as info:
        render("ab\n{{.x.y}}", {"x": "s"})
    e = pickle.loads(pickle.dumps(info.value))
    assert (type(e), str(e), e.template, e.offset, e.line, e.column) == (
        InvalidTemplate,
        str(info.value),
        "ab\n{{.x.y}}",
        5,
        2,
        2,
    )
