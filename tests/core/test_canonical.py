"""Conformance and property tests for host canonicalisation.

Filtering compares canonical names only, so any spelling a browser treats as the same host
must give the same name here, and anything a browser refuses must raise HostError. The
web-platform-tests data (tests/data/wpt, see NOTICE.md) is what browsers are tested against.

Our canonical form differs from a browser's `hostname` in two deliberate ways: IPv6 has no
brackets and trailing dots are stripped (`example.com.` is the same site). A host made only of
dots (`http://./`) therefore has no name at all and is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import string
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import ada_url
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.core.hosts import (
    _FAST_DOMAIN,
    CanonicalURL,
    Host,
    HostError,
    HostKind,
    canonical_host,
    canonical_url,
    canonical_url_entry,
    host_suffixes,
    request_url,
    split_authority,
    valid_authority,
)
from proxy_addons.core.url_keys import key_host, match_key

WPT = Path(__file__).parents[1] / "data" / "wpt"
HTTP_SCHEMES = ("http", "https")


def _load(name: str) -> list[dict[str, Any]]:
    """The test objects of a WPT file (plain strings in it are comments)."""
    data = json.loads((WPT / name).read_text(encoding="utf-8"))
    return [case for case in data if isinstance(case, dict)]


def _case_id(index: int, text: str) -> str:
    return f"{index:04d}:{ascii(text)[1:-1][:60]}"


def _rfc3986_escapes(text: str) -> str:
    unreserved = set(string.ascii_letters + string.digits + "-._~")
    out, i = [], 0
    while i < len(text):
        chunk = text[i : i + 3]
        if len(chunk) == 3 and chunk[0] == "%" and all(c in string.hexdigits for c in chunk[1:]):
            char = chr(int(chunk[1:], 16))
            out.append(char if char in unreserved else chunk.upper())
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _our_form(hostname: str) -> str | None:
    """A browser's `hostname` in our form, or None where we refuse the host."""
    if hostname.startswith("["):
        return hostname[1:-1]
    return hostname.rstrip(".") or None


def _scheme(url: str) -> str | None:
    """The scheme the URL parser would see: after trimming C0/space and removing tab/newline."""
    text = re.sub("[\t\n\r]", "", url.strip("".join(map(chr, range(0x21)))))
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text)
    return match.group()[:-1].lower() if match else None


def _in_scope(case: dict[str, Any]) -> bool:
    """Cases whose URL is (or would have been) http(s), with or without a base."""
    if case.get("failure"):
        scheme = _scheme(case["input"])
        base = case.get("base")
        if scheme is None and base is not None:
            scheme = _scheme(base)
        return scheme in HTTP_SCHEMES
    return case.get("protocol") in ("http:", "https:")


def _parse(case: dict[str, Any]) -> CanonicalURL:
    """canonical_url takes absolute URLs (all a proxy sees); a relative input is first
    resolved against its base, as the browser does before it sends the request."""
    base = case.get("base")
    if base is None:
        return canonical_url(case["input"])
    try:
        href = ada_url.join_url(base, case["input"])
    except ValueError as exc:
        raise HostError(case["input"]) from exc
    return canonical_url(href)


URL_CASES = [
    pytest.param(case, id=_case_id(i, case["input"]))
    for i, case in enumerate(_load("urltestdata.json"))
    if _in_scope(case)
]


@pytest.mark.parametrize("case", URL_CASES)
def test_urltestdata(case: dict[str, Any]) -> None:
    expected = None if case.get("failure") else _our_form(case["hostname"])
    if expected is None:
        with pytest.raises(HostError):
            _parse(case)
        return
    url = _parse(case)
    assert url.host.name == expected
    assert url.scheme + ":" == case["protocol"]
    assert url.port == (int(case["port"]) if case["port"] else None)
    # Our path and query are the browser's, with escapes normalised as servers read
    # them (RFC 3986 6.2.2): unreserved characters decoded, other escapes upper-case.
    assert url.path == ada_url.URL("http://h" + _rfc3986_escapes(case["pathname"])).pathname
    assert url.query == _rfc3986_escapes(case["search"].removeprefix("?"))
    assert canonical_host(case["host"]) == url.host  # the Host header a browser would send


def _ascii_cases(name: str) -> list[Any]:
    return [
        pytest.param(case["input"], case["output"], id=_case_id(i, case["input"]))
        for i, case in enumerate(_load(name))
    ]


@pytest.mark.parametrize(
    ("raw", "output"), _ascii_cases("toascii.json") + _ascii_cases("IdnaTestV2.json")
)
def test_domain_to_ascii(raw: str, output: str | None) -> None:
    expected = None if output is None else _our_form(output)
    if expected is None:
        with pytest.raises(HostError):
            canonical_host(raw)
    else:
        assert canonical_host(raw).name == expected


# --- properties ---------------------------------------------------------------------------

# Characters UTS #46 keeps as they are (lower-case, precomposed, left-to-right, no joiners),
# so Python's punycode codec gives the one right ASCII spelling of a label made of them.
_LETTERS = (
    string.ascii_lowercase
    + "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿß"
    + "αβγδεζηθικλμνξοπρστυφχψω"
    + "абвгдежзийклмнопрстуфхцчшщъыьэюя"
    + "中文学校网"
)
_TLDS = ["uk", "com", "org", "sch", "рф", "中国", "ελ", "ß"]

_label = (
    st.text(alphabet=_LETTERS + string.digits + "-", min_size=1, max_size=12)
    .map(lambda s: s.strip("-") or "a")
    .filter(lambda s: not s.startswith("xn"))
)
_domain_labels = st.tuples(st.lists(_label, min_size=1, max_size=4), st.sampled_from(_TLDS)).map(
    lambda parts: [*parts[0], parts[1]]
)


def _puny(label: str) -> str:
    return label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")


def _expected(labels: list[str]) -> str:
    return ".".join(_puny(label) for label in labels)


def _upper(data: st.DataObject, text: str) -> str:
    """Randomly upper-case characters whose upper case maps straight back."""
    flips = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(
        c.upper() if flip and len(c.upper()) == 1 and c.upper().lower() == c else c
        for c, flip in zip(text, flips, strict=True)
    )


def _percent(data: st.DataObject, text: str) -> str:
    """Percent-encode random letters and digits (UTF-8 bytes, random hex case)."""
    out = []
    for c in text:
        if c not in ".-" and data.draw(st.booleans()):
            digits = "".join(f"%{b:02X}" for b in c.encode("utf-8"))
            out.append(digits.lower() if data.draw(st.booleans()) else digits)
        else:
            out.append(c)
    return "".join(out)


@given(_domain_labels)
def test_unicode_and_punycode_spellings_agree(labels: list[str]) -> None:
    assert canonical_host(".".join(labels)).name == _expected(labels)
    assert canonical_host(_expected(labels)).name == _expected(labels)


@given(_domain_labels, st.data())
def test_mixed_unicode_punycode_labels_agree(labels: list[str], data: st.DataObject) -> None:
    mixed = [_puny(label) if data.draw(st.booleans()) else label for label in labels]
    assert canonical_host(".".join(mixed)).name == _expected(labels)


@given(_domain_labels, st.data())
def test_case_changes_agree(labels: list[str], data: st.DataObject) -> None:
    for spelling in (".".join(labels), _expected(labels)):
        assert canonical_host(_upper(data, spelling)).name == _expected(labels)


@given(_domain_labels)
def test_trailing_dot_agrees(labels: list[str]) -> None:
    assert canonical_host(".".join(labels) + ".").name == _expected(labels)
    assert canonical_host(_expected(labels) + ".").name == _expected(labels)


@given(_domain_labels, st.data())
def test_percent_encoding_agrees(labels: list[str], data: st.DataObject) -> None:
    host = canonical_host(_percent(data, ".".join(labels)))
    assert host == Host(_expected(labels), HostKind.DOMAIN)


@given(_domain_labels, st.data())
def test_all_spellings_at_once_agree(labels: list[str], data: st.DataObject) -> None:
    mixed = ".".join(_puny(label) if data.draw(st.booleans()) else label for label in labels)
    spelling = _percent(data, _upper(data, mixed))
    spelling += data.draw(st.sampled_from(["", ".", ":443", ".:8080"]))
    assert canonical_host(spelling).name == _expected(labels)
    url = canonical_url(f"https://{spelling}/path")
    assert url.host.name == _expected(labels)


@st.composite
def _ipv4_part(draw: st.DrawFn, value: int) -> str:
    radix = draw(st.sampled_from(["dec", "oct", "hex"]))
    if radix == "dec":
        return str(value)
    if radix == "oct":
        return "0" + format(value, "o")
    digits = format(value, draw(st.sampled_from("xX")))
    return draw(st.sampled_from(["0x", "0X"])) + "0" * draw(st.integers(0, 2)) + digits


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> tuple[int, str]:
    """An address and one way WHATWG lets you write it: 4, 3, 2 or 1 parts, any radix each."""
    n = draw(st.integers(0, 2**32 - 1))
    octets = n.to_bytes(4, "big")
    parts = draw(st.sampled_from([4, 3, 2, 1]))
    values = [*octets[: parts - 1], n & (2 ** (8 * (5 - parts)) - 1)]
    text = ".".join(draw(_ipv4_part(v)) for v in values)
    return n, text + draw(st.sampled_from(["", "."]))


@given(ipv4_spellings())
def test_ipv4_spellings_give_dotted_decimal(spelled: tuple[int, str]) -> None:
    n, text = spelled
    assert canonical_host(text) == Host(str(ipaddress.IPv4Address(n)), HostKind.IPV4)
    assert canonical_url(f"http://{text}/").host.name == str(ipaddress.IPv4Address(n))


def _whatwg_ipv6(n: int) -> str:
    """The URL standard's IPv6 serialiser: lower-case hex, first longest zero run (>= 2) as ::."""
    groups = [(n >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len, i = -1, 1, 0
    while i < 8:
        j = i
        while j < 8 and groups[j] == 0:
            j += 1
        if j - i > best_len:
            best_start, best_len = i, j - i
        i = j + 1
    hexes = [format(g, "x") for g in groups]
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len :])


_groups = st.lists(st.one_of(st.just(0), st.integers(0, 0xFFFF)), min_size=8, max_size=8)


@given(_groups, st.data())
def test_ipv6_spellings_agree(groups: list[int], data: st.DataObject) -> None:
    n = int.from_bytes(b"".join(g.to_bytes(2, "big") for g in groups), "big")
    address = ipaddress.IPv6Address(n)
    embedded = (
        ":".join(format(g, "x") for g in groups[:6])
        + ":"
        + str(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    )
    spellings = [
        address.exploded,
        ":".join(format(g, "x") for g in groups),
        address.compressed,
        _whatwg_ipv6(n),
        embedded,
    ]
    expected = Host(_whatwg_ipv6(n), HostKind.IPV6)
    for spelling in spellings:
        spelling = _upper(data, spelling)
        assert canonical_host(spelling) == expected, spelling
        assert canonical_host(f"[{spelling}]") == expected, spelling
        assert canonical_host(f"[{spelling}]:443") == expected, spelling
    assert ipaddress.IPv6Address(expected.name) == address


_hostish = st.text(
    alphabet=string.ascii_letters + string.digits + ".-_:[]%xX" + "éß中", max_size=30
)
_any_host = st.one_of(
    _domain_labels.map(".".join),
    ipv4_spellings().map(lambda spelled: spelled[1]),
    _hostish,
    st.text(max_size=30),
)


@given(_any_host)
def test_canonical_host_is_idempotent(raw: str) -> None:
    try:
        host = canonical_host(raw)
    except HostError:
        return
    assert canonical_host(host.name) == host
    assert canonical_host(host.name.upper()) == host


@given(st.from_regex(_FAST_DOMAIN, fullmatch=True))
def test_fast_path_agrees_with_full_parser(raw: str) -> None:
    try:
        expected = ada_url.URL(f"http://{raw}/").hostname.rstrip(".")
    except ValueError:
        with pytest.raises(HostError):
            canonical_host(raw)
        return
    assert canonical_host(raw).name == expected


@given(st.text())
def test_hostile_input_only_ever_raises_host_error(raw: str) -> None:
    """A crash in a hook would let the request through unfiltered; a HostError blocks it."""
    host, port = split_authority(raw)
    assert port is None or 0 <= port <= 65535
    for text in (raw, host):
        try:
            canonical_host(text)
        except HostError:
            pass
    try:
        canonical_url(raw)
    except HostError:
        pass


@given(_any_host, st.integers(0, 65535))
def test_split_authority_round_trips_canonical_hosts(raw: str, port: int) -> None:
    try:
        host = canonical_host(raw)
    except HostError:
        return
    written = f"[{host.name}]" if host.kind is HostKind.IPV6 else host.name
    assert split_authority(f"{written}:{port}") == (written, port)
    assert split_authority(written) == (written, None)
    assert canonical_host(split_authority(f"{written}:{port}")[0]) == host


# --- examples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("example.com:8080", ("example.com", 8080)),
        ("example.com:000443", ("example.com", 443)),
        ("example.com:", ("example.com:", None)),
        ("[::1]", ("[::1]", None)),
        ("[::1]:443", ("[::1]", 443)),
        ("[::1]:", ("[::1]", None)),
        ("::1", ("::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        # not a port: left on the host, where canonical_host refuses it
        ("example.com:99999", ("example.com:99999", None)),
        ("example.com:http", ("example.com:http", None)),
        ("example.com:\u00b2", ("example.com:\u00b2", None)),
        ("example.com:\u0663", ("example.com:\u0663", None)),
        ("example.com:" + "9" * 5000, ("example.com:" + "9" * 5000, None)),
        ("[::1]:\u00b2", ("[::1]:\u00b2", None)),
        ("[::1]evil.com", ("[::1]evil.com", None)),
        ("[::1", ("[::1", None)),
    ],
)
def test_split_authority(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_authority(authority) == expected


@pytest.mark.parametrize(
    "authority", ["example.com:99999", "example.com:\u00b2", "[::1]evil.com", "[::1"]
)
def test_malformed_authority_is_refused(authority: str) -> None:
    with pytest.raises(HostError):
        canonical_host(split_authority(authority)[0])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", Host("example.com", HostKind.DOMAIN)),
        ("example.com.", Host("example.com", HostKind.DOMAIN)),
        ("  example.com\r\n", Host("example.com", HostKind.DOMAIN)),
        ("example.com:443", Host("example.com", HostKind.DOMAIN)),
        ("b\u00fccher.de", Host("xn--bcher-kva.de", HostKind.DOMAIN)),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", Host("example.com", HostKind.DOMAIN)),
        ("example\u3002com", Host("example.com", HostKind.DOMAIN)),
        ("2130706433", Host("127.0.0.1", HostKind.IPV4)),
        ("0x7f.1", Host("127.0.0.1", HostKind.IPV4)),
        ("0177.0.0.01", Host("127.0.0.1", HostKind.IPV4)),
        ("[0:0::1]:8080", Host("::1", HostKind.IPV6)),
        ("::FFFF:1.2.3.4", Host("::ffff:102:304", HostKind.IPV6)),
    ],
)
def test_canonical_host_examples(raw: str, expected: Host) -> None:
    assert canonical_host(raw) == expected
    assert canonical_host(raw).is_ip is (expected.kind is not HostKind.DOMAIN)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "exa mple.com",
        "example.com/path",
        "user@example.com",
        "\u3000example.com",  # str.strip() would have eaten these; a browser refuses them
        "\x1fexample.com",
        "\u1680example.com",
        "256.0.0.1",
        "1.2.3.08",
        "xn--a.\u00df",
        "[::1",
    ],
)
def test_canonical_host_refuses(raw: str) -> None:
    with pytest.raises(HostError):
        canonical_host(raw)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("example.com", "example.com"),
        ("example.com/", "example.com/"),
        ("www.Example.COM/Path/", "www.example.com/Path/"),
        ("http://Example.com/a?b=1#frag", "example.com/a?b=1"),
        ("https://example.com:8443/x", "example.com/x"),
        ("example.com/a b", "example.com/a%20b"),
        ("example.com/./a/../b", "example.com/b"),
        ("b\u00fccher.de/seite", "xn--bcher-kva.de/seite"),
        ("0x7f.0.0.1/admin", "127.0.0.1/admin"),
        ("[::1]/x", "::1/x"),
        ("  example.com/x  ", "example.com/x"),
    ],
)
def test_canonical_url_entry(entry: str, expected: str) -> None:
    assert canonical_url_entry(entry) == expected


@pytest.mark.parametrize("entry", ["ftp://example.com/x", "exa mple.com/x", "256.0.0.1/"])
def test_canonical_url_entry_refuses(entry: str) -> None:
    with pytest.raises(HostError):
        canonical_url_entry(entry)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.b.example.com", ["a.b.example.com", "b.example.com", "example.com", "com"]),
        ("localhost", ["localhost"]),
    ],
)
def test_host_suffixes(name: str, expected: list[str]) -> None:
    assert host_suffixes(name) == expected


def test_host_and_url_helpers() -> None:
    url = canonical_url("HTTPS://WWW.Example.com:443/a/b?q=1")
    assert url == CanonicalURL(
        "https", Host("www.example.com", HostKind.DOMAIN), None, "/a/b", "q=1"
    )
    assert url.host_path == "www.example.com/a/b"
    assert str(url.host) == "www.example.com"
    with pytest.raises(HostError):
        canonical_url("javascript:alert(1)")


# --- a request's URL from its parsed parts (request_url, valid_authority) -------------------


def _host_spellings() -> st.SearchStrategy[str]:
    """Hosts as a Host header or mitmproxy's request.host may write them (no port)."""
    ipv6 = _groups.map(
        lambda groups: str(ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups)))
    )
    return st.one_of(
        _domain_labels.map(".".join),
        _domain_labels.map(lambda labels: ".".join(labels) + "."),
        ipv4_spellings().map(lambda spelled: spelled[1]),
        ipv6,
        ipv6.map(lambda text: f"[{text}]"),
    )


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


_TARGET_TOKENS = ["/", "//", "a", "B", "0", ".", "..", "%2e", "%2E", "%2f", "%5C", "%252e"]
_TARGET_TOKENS += ["\\", ";", "?", "#", "=", "&", "@", ":", "é", "%", "%41", "%zz", " ", "\t"]
_TARGET_TOKENS += ["*", "%00", "~", "evil.test", "http:", "[", "]", "\udcff", "\x7f", "<"]
_targets = st.one_of(
    st.lists(st.sampled_from(_TARGET_TOKENS), max_size=12).map(lambda t: "/" + "".join(t)),
    st.lists(st.sampled_from(_TARGET_TOKENS), max_size=6).map("".join),
    st.text(max_size=20),
)


def _as_sent(target: str) -> str:
    """The bytes a client sent (mitmproxy surrogate-escapes what is not UTF-8), %-encoded."""
    data = target.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in data)


def _has_dotdot_reference(path: str) -> bool:
    """Any piece between '/', '\\', %2F or %5C that reads '..' once ';x' is cut and escapes
    are decoded (twice: some servers do)."""
    for piece in re.split(r"/|\\|%2[fF]|%5[cC]", path):
        bare = piece.split(";")[0]
        if bare == ".." or unquote(unquote(bare)) == "..":
            return True
    return False


def _target_refused(target: str) -> bool:
    """Why request_url must refuse a target, written plainly."""
    if target == "*":
        return False
    if not target.startswith("/") or any(c in target for c in "# \x7f"):
        return True
    if any(ord(c) < 0x20 for c in target):
        return True
    try:
        sent = _as_sent(target)
    except UnicodeEncodeError:
        return True
    return _has_dotdot_reference(sent.split("?")[0])


@given(_host_spellings(), _targets, st.sampled_from(["http", "https"]))
def test_request_url_parses_host_and_target_apart(host: str, target: str, scheme: str) -> None:
    """The host is the given host whatever the target holds, and the path and query are
    what ada-url makes of the target alone (escapes normalised as canonical_url does)."""
    if _target_refused(target):
        with pytest.raises(HostError):
            request_url(scheme, host, None, target)
        return
    url = request_url(scheme, host, None, target)
    assert url.host == canonical_host(_bracketed(host))
    assert (url.scheme, url.port) == (scheme, None)
    alone = ada_url.URL("http://h" + _as_sent("/" if target == "*" else target))
    assert url.path == ada_url.URL("http://h" + _rfc3986_escapes(alone.pathname)).pathname
    assert url.query == _rfc3986_escapes(alone.search.removeprefix("?"))


@given(
    _host_spellings(),
    st.sampled_from([":", ":80", ":#", ":?", "/", "/x", "?", "#", "@evil.test", "\\", " ", "\t"]),
)
def test_request_url_refuses_a_host_with_anything_else_in_it(host: str, junk: str) -> None:
    """Only a host: a port, path, query, fragment, user or space after it is refused."""
    if junk in (":", ":80") and ":" in host and not host.startswith("["):
        junk = "]"  # '::1:80' is itself an IPv6 address: a bare literal has no port
    with pytest.raises(HostError):
        request_url("https", host + junk, None, "/")


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("//evil.test/x", "//evil.test/x", ""),  # the path never becomes the authority
        ("/@evil.test/", "/@evil.test/", ""),
        ("/\\evil.test", "//evil.test", ""),
        ("/a?b=/c?d", "/a", "b=/c?d"),
        ("/%70ath/%7e?%41", "/path/~", "A"),
        ("/a/./b/.", "/a/b/", ""),
        ("/caf\u00e9", "/caf%C3%A9", ""),
        ("/raw\udcff", "/raw%FF", ""),  # a byte that is not UTF-8, as mitmproxy gives it
        ("*", "/", ""),  # OPTIONS *: decided as the site's root
    ],
)
def test_request_url_examples(target: str, path: str, query: str) -> None:
    url = request_url("https", "example.com", 443, target)
    assert url == CanonicalURL("https", Host("example.com", HostKind.DOMAIN), None, path, query)
    assert request_url("HTTP", "[::1]", 8080, target).host == Host("::1", HostKind.IPV6)


@pytest.mark.parametrize(
    "target",
    [
        "",
        "example.com:443",  # authority-form
        "http://evil.test/",  # absolute-form: never a second host
        "a/b",
        "/a#/../b",  # '#' ends the path for nginx, not for Go
        "/a b",
        "/a\tb",
        "/a/../b",
        "/a/%2e%2E/b",
        "/a/.%2e",
        "/a/..;x/b",  # Tomcat drops ';x' and goes up; nginx does not
        "/a%2F..%2Fb",
        "/a\\..\\b",
        "/a/%252e%252e/b",  # decoded twice by some servers
        "/\ud800",  # a lone surrogate no client could have sent
    ],
)
def test_request_url_refuses_targets(target: str) -> None:
    with pytest.raises(HostError):
        request_url("http", "example.com", None, target)


def test_request_url_refuses_bad_scheme_and_port() -> None:
    for scheme, port in [("ftp", None), ("ws", None), ("http", -1), ("http", 65536)]:
        with pytest.raises(HostError):
            request_url(scheme, "example.com", port, "/")
    assert request_url("http", "example.com", 8080, "/").port == 8080
    assert request_url("http", "example.com", 80, "/").port is None


@given(_host_spellings(), st.one_of(st.none(), st.integers(0, 65535)), st.data())
def test_valid_authority_takes_what_a_client_writes(
    host: str, port: int | None, data: st.DataObject
) -> None:
    written = _bracketed(host)
    if not written.startswith("["):
        written = _upper(data, written)
    text = written if port is None else f"{written}:{port:0{data.draw(st.integers(1, 5))}d}"
    assert valid_authority(text) == (canonical_host(_bracketed(host)), port)


_AUTHORITY_JUNK = [":#", ":?", "/", "/x", ":80/", "@evil.test", " ", ",evil.test", ":8o"]
_AUTHORITY_JUNK += [":-1", "\\", "#", "?", ":80:80", ":99999", ":\u0663", "\x00", ";", "]"]


@given(_host_spellings(), st.sampled_from(_AUTHORITY_JUNK))
def test_valid_authority_refuses_anything_but_host_and_port(host: str, junk: str) -> None:
    with pytest.raises(HostError):
        valid_authority(_bracketed(host) + junk)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\uff43\uff48\uff41\uff54\uff54\uff45\uff52.test", ("chatter.test", None)),  # fullwidth
        ("Chatter.Test.:80", ("chatter.test", 80)),
        ("chatter.test.", ("chatter.test", None)),
        ("b\u00fccher.de:8080", ("xn--bcher-kva.de", 8080)),
        ("xn--bcher-kva.de", ("xn--bcher-kva.de", None)),
        ("ex%61mple.com", ("example.com", None)),
        ("example.com:", ("example.com", None)),  # RFC 3986: an empty port is no port
        ("0x7f.1:0080", ("127.0.0.1", 80)),
        ("[::FFFF:1.2.3.4]:443", ("::ffff:102:304", 443)),
        ("[::1]:", ("::1", None)),
    ],
)
def test_valid_authority_examples(text: str, expected: tuple[str, int | None]) -> None:
    host, port = valid_authority(text)
    assert (host.name, port) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":80",
        "::1",  # IPv6 in a Host header needs brackets
        "[::1",
        "[::1]x",
        "[::1]:x",
        "[v1.fe]",
        "a.test, b.test",  # a repeated Host header, joined
        "a.test,b.test",
        "user@a.test",
        "a.test:#",
        "a.test:?",
        "a.test/",
        "a\uff0fb.test",  # fullwidth solidus: a '/' once mapped
        "ex%2Fa.test",
        "a\u3000b.test",
    ],
)
def test_valid_authority_refuses(text: str) -> None:
    with pytest.raises(HostError):
        valid_authority(text)


@given(st.text(max_size=40))
def test_request_parts_only_ever_raise_host_error(raw: str) -> None:
    """The hooks turn a HostError into a refusal; anything else would be a crash."""
    for call in (
        lambda: valid_authority(raw),
        lambda: request_url("https", raw, None, "/"),
        lambda: request_url("https", "example.com", None, raw),
    ):
        try:
            call()
        except HostError:
            pass
    match_key(raw)
    match_key(raw, fold_case=True)


# --- match keys: URL entries matched as lenient servers read paths --------------------------

_KEY_KEEPS = set(string.ascii_letters + string.digits + "-._~!$&'()*+,=:@")


def _reference_key(url: str, fold_case: bool) -> str:
    """match_key written plainly: separators to '/', ';x' cut, escapes decoded and written
    one way, dot segments resolved, empty segments dropped; the query as it is."""
    before_query, _, query = url.partition("?")
    host, _, path = before_query.partition("/")
    for separator in ("\\", "%2F", "%2f", "%5C", "%5c"):
        path = path.replace(separator, "/")
    stack: list[str] = []
    for segment in path.split("/"):
        raw = unquote_to_bytes(segment.split(";")[0])
        if fold_case:
            with contextlib.suppress(UnicodeDecodeError):
                raw = raw.decode("utf-8").lower().encode("utf-8")
        text = "".join(chr(b) if chr(b) in _KEY_KEEPS else f"%{b:02X}" for b in raw)
        if text == "..":
            stack = stack[:-1]
        elif text not in ("", "."):
            stack.append(text)
    key = host + "".join("/" + s for s in stack) + (f"?{query}" if query else "")
    return key.lower() if fold_case else key


_PATH_TOKENS = ["/", "//", "\\", "a", "Z", "0", ".", "..", "%2e", "%2E", "%2f", "%5c", ";"]
_PATH_TOKENS += ["p=1", "%41", "%3B", "%3f", "%25", "%zz", "%", "é", "%C3%A9", "%c3%89", "+"]
_PATH_TOKENS += ["%2B", "~", "@", ":", "?", "&", "="]


@given(
    st.sampled_from(["a.test", "127.0.0.1", "::1"]),
    st.lists(st.sampled_from(_PATH_TOKENS), max_size=14).map("".join),
    st.booleans(),
)
def test_match_key_agrees_with_a_plain_reference(host: str, path: str, fold: bool) -> None:
    url = f"{host}/{path}"
    key = match_key(url, fold_case=fold)
    assert key == _reference_key(url, fold)
    assert match_key(key, fold_case=fold) == key  # a key is its own key
    assert match_key(match_key(url), fold_case=True) == match_key(url, fold_case=True)


_SEGMENT = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,=:@é中<>\"{}|^`",
    min_size=1,
    max_size=6,
).filter(lambda s: s.strip(".") != "")


@st.composite
def _spelled_path(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(plain path, a spelling lenient servers read as it, whether it uses '..')."""
    segments = draw(st.lists(_SEGMENT, min_size=1, max_size=5))
    plain = "/" + "/".join(segments)
    out, dotdot = [], False
    for segment in segments:
        separator = draw(st.sampled_from(["/", "/", "//", "\\", "%2F", "%5c", "/./", "/x/../"]))
        if not out:
            separator = "/" + separator.lstrip("/") if separator[0] == "/" else "/" + separator
        dotdot = dotdot or ".." in separator
        spelled = "".join(
            "".join(f"%{b:02x}" if data_flip else f"%{b:02X}" for b in c.encode())
            if draw(st.booleans())
            else c
            for c, data_flip in ((c, draw(st.booleans())) for c in segment)
        )
        if draw(st.integers(0, 4)) == 0:
            spelled += draw(st.sampled_from([";", ";jsessionid=1", ";p=a,b"]))
        out.append(separator + spelled)
    out.append(draw(st.sampled_from(["", "", "/", "//", "/.", "/%2e/"])))
    return plain, "".join(out), dotdot


def _canonical_path(path: str) -> str:
    return canonical_url("http://a.test" + path).path


@given(_spelled_path(), st.data())
def test_spellings_servers_read_alike_have_one_key(
    spelled_path: tuple[str, str, bool], data: st.DataObject
) -> None:
    """Merged slashes, backslashes, %2F/%5C, '.', '..', escapes (any case), ';params' and a
    trailing slash: as a policy explain URL and as a proxied request-target."""
    plain, spelled, dotdot = spelled_path
    expected = match_key("a.test" + _canonical_path(plain))
    assert match_key("a.test" + _canonical_path(spelled)) == expected
    try:
        url = request_url("https", "a.test", None, spelled)
    except HostError:
        assert dotdot  # only a '..' is refused, and the gateway blocks it as invalid
    else:
        assert match_key("a.test" + url.path) == expected
    upper = _upper(data, spelled)
    folded = match_key("a.test" + _canonical_path(plain), fold_case=True)
    assert match_key("a.test" + _canonical_path(upper), fold_case=True) == folded


@pytest.mark.parametrize(
    ("url", "key", "folded"),
    [
        ("a.test", "a.test", "a.test"),
        ("a.test/", "a.test", "a.test"),
        ("a.test/?q=1", "a.test?q=1", "a.test?q=1"),
        ("a.test//A//b/", "a.test/A/b", "a.test/a/b"),
        ("a.test/a;jsessionid=1/b;x", "a.test/a/b", "a.test/a/b"),
        ("a.test/x/%2e%2E/%70refix", "a.test/prefix", "a.test/prefix"),
        ("a.test/a\\b%5Cc%2fd", "a.test/a/b/c/d", "a.test/a/b/c/d"),
        ("a.test/a%2Bb/%3b/%zz", "a.test/a+b/%3B/%25zz", "a.test/a+b/%3b/%25zz"),
        ("a.test/%C3%89?Q=%41", "a.test/%C3%89?Q=%41", "a.test/%c3%a9?q=%41"),
        ("a.test/../..", "a.test", "a.test"),
    ],
)
def test_match_key_examples(url: str, key: str, folded: str) -> None:
    assert match_key(url) == key
    assert match_key(url, fold_case=True) == folded
    assert key_host(key) == "a.test"
