"""Risk phrase libraries: loading and its mistakes, and matching however a phrase is typed.

Most tests run the shipped libraries (policies/phrases), since what a school gets is what
must catch "k1ll mys3lf" and must not flag "Scunthorpe". Loading mistakes use small
libraries written to tmp_path.
"""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_addons.core.content.phrase_library import PhraseError, load_libraries, main
from proxy_addons.core.content.phrases import CATEGORIES, PhraseHit, PhraseMatcher
from proxy_addons.core.content.words import normalise

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ROOT / "policies" / "phrases"
EN, PL = LIBRARIES / "en.yaml", LIBRARIES / "pl.yaml"


@pytest.fixture(scope="module")
def matcher() -> PhraseMatcher:
    return load_libraries([EN, PL])


def found(matcher: PhraseMatcher, text: str) -> set[tuple[str, str]]:
    return {(h.category, h.phrase) for h in matcher.match(text)}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits} of {path}"
    return hits[0]


# --------------------------------------------------------------------------- the libraries


def test_the_shipped_libraries_cover_every_category(matcher: PhraseMatcher) -> None:
    assert set(matcher.sizes) == {"en", "pl"}
    for category in CATEGORIES:
        assert matcher.sizes["en"][category] >= 15, category
        assert matcher.sizes["pl"][category] >= 5, category
    assert len(matcher) == sum(sum(c.values()) for c in matcher.sizes.values())


def test_intent_phrases_are_the_most_severe(matcher: PhraseMatcher) -> None:
    for text, category in [
        ("kill myself", "suicide"),
        ("how to self harm", "self_harm"),
        ("end my life", "suicide"),
        ("don't tell your parents, this is our secret", "cse_grooming"),
        ("go kill yourself", "bullying"),
    ]:
        top = matcher.match(text)[0]
        assert (top.category, top.severity) == (category, 5), text


# --------------------------------------------------------------------------- loading mistakes


GOOD = """\
name: test
categories:
  suicide:
    5: [kill myself]
"""


@pytest.mark.parametrize(
    ("text", "needle", "field", "says"),
    [
        (GOOD + "  hobbies:\n    2: [knitting]\n", "hobbies:", "categories.hobbies", "unknown"),
        (GOOD + "    6: [end it]\n", "6: [end it]", "categories.suicide.6", "1 to 5"),
        (GOOD + "    five: [end it]\n", "five:", "categories.suicide.five", "1 to 5"),
        (GOOD + "    4: []\n", "4: []", "categories.suicide.4", "non-empty"),
        (GOOD + "    4:\n      - sad\n      - yes\n", "- yes", "categories.suicide.4", "quotes"),
        (GOOD + "    4:\n      - '!!!'\n", "'!!!'", "categories.suicide.4", "no letters"),
        (GOOD + "    4:\n      - 'x z'\n", "'x z'", "categories.suicide.4", "too short"),
        (GOOD + "    4: [" + "a " * 13 + "]\n", "4: [a", "categories.suicide.4", "12 words"),
        (GOOD + "  bullying: [kys]\n", "bullying:", "categories.bullying", "severities"),
        (GOOD + "colour: blue\n", "colour:", "colour", "not a setting"),
        (GOOD + "innocent: fine\n", "innocent:", "innocent", "list"),
        ("name: test\n", "name: test", "categories", "categories"),
        (GOOD + "    4: [sad\n", "4: [sad", "file", "not valid YAML"),
    ],
)
def test_a_mistake_names_file_line_and_field(
    tmp_path: Path, text: str, needle: str, field: str, says: str
) -> None:
    path = write(tmp_path / "lib.yaml", text)
    with pytest.raises(PhraseError) as info:
        load_libraries([path])
    err = info.value
    assert (err.file, err.field) == (str(path), field)
    if says == "not valid YAML":  # the parser names where it noticed: the end of the file
        assert err.line >= line_of(path, needle)
    else:
        assert err.line == line_of(path, needle)
    assert says in err.message
    assert str(err).startswith(f"{path}, line {err.line}, {field}: ")


def test_a_missing_file_is_a_phrase_error(tmp_path: Path) -> None:
    with pytest.raises(PhraseError, match="cannot read"):
        load_libraries([tmp_path / "absent.yaml"])


def test_the_same_phrase_twice_keeps_its_highest_severity(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", GOOD.replace("5: [kill myself]", "2: [Kill my-self]"))
    second = write(tmp_path / "b.yaml", GOOD.replace("name: test", "name: local"))
    for order in ([first, second], [second, first]):
        matcher = load_libraries(order)
        assert len(matcher) == 1
        assert [(h.severity, h.library) for h in matcher.match("kill myself")] == [(5, "local")]
    same_file = write(tmp_path / "c.yaml", GOOD + "    3: [kill myself]\n")
    assert [h.severity for h in load_libraries([same_file]).match("KILL MYSELF")] == [5]


def test_a_school_library_adds_to_the_shipped_ones(tmp_path: Path) -> None:
    local = write(
        tmp_path / "local.yaml",
        "categories:\n  bullying:\n    4: [burn book]\ninnocent: [burn book club]\n",
    )
    matcher = load_libraries([EN, PL, local])
    assert matcher.match("they made a burn book") == [
        PhraseHit("bullying", 4, "burn book", "local", "burn book")
    ]
    assert matcher.match("join the burn book club") == []
    assert matcher.sizes["local"]["bullying"] == 1


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("s u i c i d e", "suicide"),
        ("s.u.i.c.i.d.e", "suicide"),
        ("s-u-i-c-i-d-e", "suicide"),
        ("K1ll mys3lf!!", "kill myself"),
        ("KILL. MY. SELF", "kill my self"),
        ("suiiiicide", "suicide"),
        ("$uicide", "suicide"),
        ("sui\u200bcide", "suicide"),  # zero-width space
        ("ｓｕｉｃｉｄｅ", "suicide"),  # full-width
        ("𝐬𝐮𝐢𝐜𝐢𝐝𝐞", "suicide"),  # mathematical bold
        ("ѕuісіdе", "suicide"),  # Cyrillic look-alikes among Latin letters
        ("Don’t tell", "dont tell"),
        ("Chcę się zabić", "chce sie zabic"),
        ("Dŵr a ŷd", "dwr a yd"),  # Welsh circumflexes are typed as plain letters
        ("ŁÓDŹ", "lodz"),
        ("Привет, мир", "привет мир"),  # other scripts keep their letters and marks
        ("rule34 and bet365", "rule34 and bet365"),
    ],
)
def test_normalise(text: str, normal: str) -> None:
    assert normalise(text) == normal
    assert PhraseMatcher.normalise(text) == normal


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("text", "phrase", "matched"),
    [
        ("s u i c i d e", "suicide", "suicide"),
        ("s.u.i.c.i.d.e", "suicide", "suicide"),
        ("s-u-i-c-i-d-e", "suicide", "suicide"),
        ("k1ll mys3lf", "kill myself", "kill myself"),
        ("KILL. MY. SELF", "kill myself", "kill my self"),
        ("suiiicide", "suicide", "suicide"),
        ("sucide", "suicide", "sucide"),  # a letter missing
        ("suicdie", "suicide", "suicdie"),  # two letters swapped
        ("suiside", "suicide", "suiside"),  # a letter wrong
        ("killmyself", "kill myself", "killmyself"),
        ("#endmylife", "end my life", "endmylife"),
        ("k i l l   m y s e l f", "kill myself", "killmyself"),
        ("k!ll mys€lf", "kill myself", "kill myself"),
        ("K|LL MY5ELF", "kill myself", "kill myself"),
        ("i want 2 die", "want to die", "want 2 die"),
        ("k y s", "kys", "kys"),
        ("how 2 self-harm?", "how to self harm", "how 2 self harm"),
        ("she's pr0-ana", "pro ana", "pro ana"),
        ("dont tell ur parents", "dont tell your parents", "dont tell ur parents"),
        ("how to kil myslef", "how to kill myself", "how to kil myslef"),
    ],
)
def test_obfuscated_spellings_match(
    matcher: PhraseMatcher, text: str, phrase: str, matched: str
) -> None:
    hits = {h.phrase: h for h in matcher.match(text)}
    assert phrase in hits, f"{text!r} gave {list(hits)}"
    assert hits[phrase].matched == matched


@pytest.mark.parametrize(
    "text",
    ["Chcę się zabić", "chce sie zabic", "CHCĘ SIĘ ZABIĆ", "chc3 s1ę z4b1ć", "chcę  się. zabić!"],
)
def test_polish_matches_with_and_without_diacritics(matcher: PhraseMatcher, text: str) -> None:
    hits = matcher.match(text)
    assert [(h.category, h.severity, h.phrase, h.library) for h in hits][:1] == [
        ("suicide", 5, "chcę się zabić", "pl")
    ]
    assert hits[0].matched == "chce sie zabic"


def test_a_library_in_welsh_matches_with_and_without_accents(tmp_path: Path) -> None:
    welsh = write(
        tmp_path / "cy.yaml",
        "name: cy\nlanguage: cy\ncategories:\n"
        "  bullying:\n    4: [rwyn casáu fy hun, mae pawb yn dy gasáu]\n"
        "  suicide:\n    5: [dw i eisiau marw, lladd fy hun]\n",
    )
    matcher = load_libraries([welsh])
    for text in ["Rwy'n casáu fy hun", "rwyn casau fy hun", "MAE PAWB YN DY GASAU"]:
        assert [h.category for h in matcher.match(text)] == ["bullying"], text
    assert [h.phrase for h in matcher.match("Dw i eisiau m4rw")] == ["dw i eisiau marw"]
    assert matcher.match("lladd amser") == []


INNOCENT = [
    "Scunthorpe United won 2-1 on Saturday",
    "I bought a bunch of grapes and a grapefruit",
    "My therapist says journaling helps",
    "I want to skill myself up in Python this summer",
    "Assassin's Creed Valhalla review",
    "We watched Suicide Squad at the weekend",
    "Suicide prevention charities train volunteers",
    "The heroine of the novel was heroic",
    "A hero in the story saves the day",
    "The casing of the phone is cracked",
    "Exotic fruit and erratic weather",
    "Classic cocktail recipes from Essex, Sussex and Middlesex",
    "Photosynthesis analysis document, cumulative totals",
    "I'm going to dye my hair blue",
    "I want to die my hair pink",
    "I'll kill myself laughing at this",
    "Kill time before the bus comes",
    "Killer whales live in pods",
    "This cake is to die for",
    "The greater jihad is the inner spiritual struggle",
    "The national action plan on climate change",
    "Casino Royale is a Bond film",
    "Monte Cassino was a battle in 1944",
    "The geese were gabbling and the radio was garbling the message",
    "Send me a picture of your homework",
    "Cut my hair short and hang my coat up",
    "Skills for life, overkill, killjoy",
    "Knife and fork, butterfly stroke, bomb calorimeter",
    "He touched the ball with his hand",
    "In 1488 Bartolomeu Dias rounded the cape",
    "Jak się zabawić w weekend?",
    "Zabić czas w pociągu",
    "Bramka samobójcza w ostatniej minucie",
    "samobójstwo w literaturze romantyzmu",
    "Email me at bob@example.com, pass$word and help!!!",
    "",
    "!!! ??? ... 12345 2024-11-25",
]


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_text_does_not_match(matcher: PhraseMatcher, text: str) -> None:
    assert matcher.match(text) == []


def test_an_innocent_phrase_hides_only_the_hit_inside_it(matcher: PhraseMatcher) -> None:
    hits = found(matcher, "after Suicide Squad I could kill myself")
    assert hits == {("suicide", "kill myself")}
    assert found(matcher, "suicide squad, then suicide") == {("suicide", "suicide")}


def test_hits_come_highest_severity_first_and_are_capped(matcher: PhraseMatcher) -> None:
    text = (
        "online casino free spins. cocaine. how to get high. I want to die. "
        "nobody likes you. porn. zombie knife. heil hitler"
    )
    hits = matcher.match(text)
    severities = [h.severity for h in hits]
    assert severities == sorted(severities, reverse=True)
    assert severities[0] == 5 and severities[-1] == 2
    assert len({h.category for h in hits}) >= 7
    assert matcher.match(text, max_hits=2) == hits[:2]
    assert matcher.match(text, max_hits=0) == []


def test_each_phrase_is_reported_once(matcher: PhraseMatcher) -> None:
    hits = matcher.match("suicide " * 50 + "s u i c i d e")
    assert [(h.phrase, h.matched) for h in hits] == [("suicide", "suicide")]


def test_a_phrase_inside_a_longer_one_of_its_category_is_not_repeated(
    matcher: PhraseMatcher,
) -> None:
    assert found(matcher, "how to kill myself") == {("suicide", "how to kill myself")}
    # Different categories are both kept: the lead sees each.
    assert found(matcher, "go kill yourself") == {("bullying", "go kill yourself")}
    assert found(matcher, "commit suicide, suicide forum") == {
        ("suicide", "commit suicide"),
        ("suicide", "suicide forum"),
    }


def test_a_100_kb_page_is_matched(matcher: PhraseMatcher) -> None:
    page = ("The class read about rivers, volcanoes and the water cycle. " * 1700)[:100_000]
    page = page[:50_000] + " how to make a pipe bomb " + page[50_000:]
    hits = matcher.match(page)
    assert [(h.category, h.phrase) for h in hits] == [("weapons", "how to make a pipe bomb")]


# --------------------------------------------------------------------------- property


def _phrases() -> list[tuple[str, str]]:
    """(category, phrase) for every phrase of the shipped libraries."""
    out: list[tuple[str, str]] = []
    for path in (EN, PL):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for category, levels in doc["categories"].items():
            for phrases in levels.values():
                out.extend((category, str(p)) for p in phrases)
    return out


PHRASES = _phrases()
LEET = {"a": "4@", "e": "3", "i": "1", "o": "0", "s": "5$", "t": "7", "l": "1", "b": "8", "g": "9"}
SEPARATORS = [" ", "  ", ". ", "-", "_", ", ", " / ", "... ", "\n"]


def letters(phrase: str) -> str:
    return re.sub(r"(.)\1+", r"\1", normalise(phrase).replace(" ", ""))


@st.composite
def disguised(draw: st.DrawFn) -> tuple[str, str, str]:
    """A library phrase in random case, leetspeak, stretched letters and separators."""
    category, phrase = draw(st.sampled_from(PHRASES))
    spaced_out = draw(st.booleans())
    words = []
    for word in phrase.split():
        out = []
        for k, ch in enumerate(word):
            choice = draw(st.integers(0, 5))
            if choice == 0 and ch in LEET and not (len(word) >= 5 and k == 0):
                subs = LEET[ch] if not spaced_out else LEET[ch][:1]  # "$" alone is no word
                if k == 0 and len(word) > 1:
                    subs = subs.replace("@", "") or ch  # "@name" is a handle
                ch = draw(st.sampled_from(subs))
            elif choice == 1:
                ch = ch.upper()
            elif choice == 2 and ch.isalpha():
                ch = ch * draw(st.integers(2, 4))
            out.append(ch)
        words.append("".join(out))
    if spaced_out:
        gap = draw(st.sampled_from([" ", ".", "-", " . "]))
        text = gap.join(ch for word in words for ch in word)
    else:
        text = "".join(w + draw(st.sampled_from(SEPARATORS)) for w in words[:-1]) + words[-1]
    return category, phrase, text


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=disguised())
def test_disguised_library_phrases_still_match(
    matcher: PhraseMatcher, case: tuple[str, str, str]
) -> None:
    category, phrase, text = case
    hits = matcher.match(text, max_hits=50)
    # Phrases of the same letters are one ("xxx videos", "xvideos"): compare letters.
    assert any(h.category == category and letters(h.phrase) == letters(phrase) for h in hits), (
        f"{text!r} ({phrase!r}) gave {[h.phrase for h in hits]}"
    )


# --------------------------------------------------------------------------- tools


def test_the_check_command_lists_sizes_and_tries_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EN), str(PL), "--try", "k1ll mys3lf"]) == 0
    out = capsys.readouterr().out
    assert "en: " in out and "pl: " in out
    assert "5 suicide: 'kill myself' (en) as 'kill myself'" in out


def test_the_check_command_reports_a_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path / "bad.yaml", GOOD + "    9: [end it]\n")
    assert main([str(bad)]) == 1
    assert f"{bad}, line 5, categories.suicide.9:" in capsys.readouterr().out


def test_the_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = sys.argv
    sys.argv = ["phrase_bench.py", "--kb", "5", "--runs", "1"]
    try:
        runpy.run_path(str(ROOT / "bench" / "phrase_bench.py"), run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        sys.argv = argv
    assert " ms" in capsys.readouterr().out
