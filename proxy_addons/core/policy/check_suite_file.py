"""Reading a termly check suite file: its cases, each problem named with its file and line.

A suite is a YAML file the policy names (`checks: suite:`), read with the policy's own located
YAML reader so a mistake reads like any other policy mistake. What a case is and how what was
seen is judged is the contract the gateway shares with the device agent (`agent.check_suite`).
The example suite, with every setting explained, is policies/checks/termly.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.check_suite import CheckCase, Expect
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, Where, load_located

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class SuiteError(ValueError):
    """Problems in a suite file, each with its place."""

    def __init__(self, problems: list[tuple[Where, str]]) -> None:
        self.problems = problems
        lines = [f"{where}: {message}" for where, message in problems]
        super().__init__(f"{len(problems)} problem(s) in the check suite:\n" + "\n".join(lines))


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[CheckCase, ...]
    path: Path | None = None

    def cases_for(self, profile: str) -> tuple[CheckCase, ...]:
        return tuple(c for c in self.cases if c.applies_to(profile))

    def case(self, case_id: str) -> CheckCase | None:
        return next((c for c in self.cases if c.id == case_id), None)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.category for c in self.cases))

    def to_json(self, profile: str | None = None) -> dict[str, Any]:
        cases = self.cases if profile is None else self.cases_for(profile)
        return {"name": self.name, "cases": [c.to_json() for c in cases]}


def load_suite(path: Path) -> Suite:
    """Read and check a suite file; raise SuiteError naming the file and line of each problem."""
    path = Path(path).resolve()
    try:
        raw = load_located(path)
    except PolicySyntaxError as exc:
        raise SuiteError([(exc.where, exc.message)]) from exc
    problems: list[tuple[Where, str]] = []
    top_where = Where(str(path), 1)
    if not isinstance(raw, LMap):
        raise SuiteError([(top_where, "a check suite is a mapping with 'name:' and 'cases:'")])
    for key in raw:
        if key not in ("name", "cases"):
            problems.append((raw.at(key), f"'{key}' is not a setting of a suite (name, cases)"))
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append((raw.at("name"), "the suite needs a 'name:' (some text)"))
        name = path.stem
    items = raw.get("cases")
    if not isinstance(items, LList) or not items:
        problems.append((raw.at("cases"), "the suite needs a list of 'cases:'"))
        raise SuiteError(problems)
    cases: list[CheckCase] = []
    seen: dict[str, Where] = {}
    for i, item in enumerate(items):
        at = items.at(i)
        case = _case(item, at, problems)
        if case is None:
            continue
        if case.id in seen:
            problems.append(
                (at, f"case id '{case.id}' is used twice (first at line {seen[case.id].line})")
            )
            continue
        seen[case.id] = at
        cases.append(case)
    if problems:
        raise SuiteError(problems)
    return Suite(name.strip(), tuple(cases), path)


_CASE_KEYS = ("id", "url", "category", "profiles", "expect", "note")


def _case(item: Any, at: Where, problems: list[tuple[Where, str]]) -> CheckCase | None:
    if not isinstance(item, LMap):
        problems.append((at, "a case is a mapping: id, url, category, expect (profiles, note)"))
        return None
    before = len(problems)
    for key in item:
        if key not in _CASE_KEYS:
            problems.append(
                (item.at(key), f"'{key}' is not a setting of a case ({', '.join(_CASE_KEYS)})")
            )
    case_id = str(item.get("id", "")).strip().lower()
    if not _ID.fullmatch(case_id):
        problems.append(
            (item.at("id"), "each case needs an 'id:' of letters, digits, '-', '_' or '.'")
        )
    url = str(item.get("url", "")).strip()
    parts = urlsplit(url) if url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(
            (item.at("url"), f"'{url}' is not a web address starting http:// or https://")
        )
    category = str(item.get("category", "")).strip()
    if not category:
        problems.append((item.at("category"), "each case needs a 'category:'"))
    expect_raw = str(item.get("expect", "")).strip().lower()
    try:
        expect = Expect(expect_raw)
    except ValueError:
        choices = ", ".join(e.value for e in Expect)
        problems.append(
            (item.at("expect"), f"expect should be one of {choices}, not '{expect_raw}'")
        )
        expect = Expect.BLOCKED
    profiles_raw = item.get("profiles", [])
    if isinstance(profiles_raw, str):
        profiles_raw = [profiles_raw]
    if not isinstance(profiles_raw, list):
        problems.append((item.at("profiles"), "profiles should be a list, e.g. [ks2, early_years]"))
        profiles_raw = []
    note = item.get("note", "")
    if len(problems) > before:
        return None
    return CheckCase(
        id=case_id,
        url=url,
        category=category,
        profiles=frozenset(str(p).strip() for p in profiles_raw if str(p).strip()),
        expect=expect,
        note=" ".join(str(note or "").split()),
        where=at,
    )


def suite_problems(suite: Suite, profiles: set[str] | frozenset[str]) -> list[tuple[Where, str]]:
    """Cases naming a profile the policy doesn't have (checked against the policy in force)."""
    out = []
    for case in suite.cases:
        place = case.where if isinstance(case.where, Where) else Where(str(suite.path), 0)
        for name in sorted(case.profiles - set(profiles)):
            out.append(
                (
                    place,
                    f"case '{case.id}': '{name}' is not a profile of the policy",
                )
            )
    return out
