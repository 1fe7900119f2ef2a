"""Conformance and property tests for host canonicalisation.

Filtering compares canonical names only, so any spelling a browser treats as the same host
must give the same name here, and anything a browser refuses must raise HostError. The
web-platform-tests data (tests/data/wpt, see NOTICE.md) is what browsers are tested against.

Our canonical form differs from a browser's `hostname` in two deliberate ways: IPv6 has no
brackets and trailing dots are stripped (`example.com.` is the same site). A host made only of
dots (`http://./`) therefore has no name at all and is refused.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
from pathlib import Path
from typing import Any

import ada_url
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.canonical import (
    _FAST_DOMAIN,
    CanonicalURL,
    Host,
    HostError,
    HostKind,
    canonical_host,
    canonical_url,
    canonical_url_entry,
    host_suffixes,
    split_authority,
)

WPT = Path(__file__).parent / "data" / "wpt"
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
