"""The filtering changes a school makes, as edits of its policy files' text.

Each edit keeps the files' comments and layout: a list file gains or loses one line; in
the policy YAML only the line (or the one list item) that holds the value changes. The
edited files are then loaded as a policy in a temporary overlay of the policy folder
(the untouched files linked, the edited ones written), so a change that breaks the
policy is refused with the loader's own message before anything is written.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy_addons.core.hosts import HostError, canonical_host
from proxy_addons.core.lists.sources import url_entry
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.policy.yaml_reader import LList, LMap, PolicySyntaxError, load_located

KINDS = {
    "list_add": "Add a site to a list",
    "list_remove": "Remove a site from a list",
    "category_add": "Add a category to a profile's rule",
    "category_remove": "Remove a category from a profile's rule",
    "schedule_times": "Change a schedule's times",
}
LIST_KINDS = ("domains", "urls")  # the school's own list files (UT1 folders come from feeds)
_TIME_RANGE = re.compile(r"^\d{2}:\d{2}-\d{2}:\d{2}$")
_NAME = re.compile(r"^[a-z0-9_]+$")


class EditError(ValueError):
    """A change that cannot be made; the message says why, for the person who asked."""


@dataclass(frozen=True)
class Edit:
    """A change worked out against the files as they are: each file's text before and after."""

    summary: str
    texts: dict[str, tuple[str, str]]  # path relative to the policy folder -> (before, after)

    @property
    def diff(self) -> str:
        return unified_diff({rel: pair for rel, pair in self.texts.items()})

    @property
    def base_hash(self) -> str:
        return files_hash({rel: before for rel, (before, _) in self.texts.items()})


def unified_diff(texts: dict[str, tuple[str, str]]) -> str:
    out: list[str] = []
    for rel in sorted(texts):
        before, after = texts[rel]
        out.extend(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"a/{rel}",
                tofile=f"b/{rel}",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def files_hash(texts: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(texts):
        digest.update(rel.encode() + b"\0" + texts[rel].encode() + b"\0")
    return digest.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def editable_lists(policy: Policy) -> dict[str, str]:
    """The school's own list files a change may edit: relative path -> kind."""
    root = policy.path.parent
    out: dict[str, str] = {}
    for category in policy.categories.values():
        for source in category.sources.sources:
            if source.kind in LIST_KINDS and source.path.is_relative_to(root):
                out[source.path.relative_to(root).as_posix()] = source.kind
    return dict(sorted(out.items()))


def plan(policy: Policy, change: dict[str, Any]) -> Edit:
    """The edit `change` makes to the files as they are now; EditError if it can't."""
    kind = change.get("kind")
    if kind in ("list_add", "list_remove"):
        return _list_edit(policy, change, adding=kind == "list_add")
    if kind in ("category_add", "category_remove"):
        return _category_edit(policy, change, adding=kind == "category_add")
    if kind == "schedule_times":
        return _schedule_edit(policy, change)
    raise EditError(f"Unknown kind of change {kind!r}: use one of {', '.join(KINDS)}.")


# -- list files ------------------------------------------------------------------------


def list_entry(kind: str, value: str) -> str:
    """A site as its list file writes it: a domain's canonical name, or a URL entry."""
    word = value.strip()
    if kind == "domains":
        word = re.sub(r"^[a-z]+://", "", word, flags=re.I).split("/", 1)[0]
        word = word.removeprefix("*.").removeprefix(".")
        try:
            return canonical_host(word).name
        except HostError as exc:
            raise EditError(f"{value!r} is not a site's name: {exc}") from None
    word = re.sub(r"^[a-z]+://", "", word, flags=re.I)
    try:
        url_entry(word)
    except (HostError, ValueError) as exc:
        raise EditError(f"{value!r} is not an address: {exc}") from None
    if not word or any(c.isspace() for c in word):
        raise EditError(f"{value!r} is not an address")
    return word


def _list_edit(policy: Policy, change: dict[str, Any], *, adding: bool) -> Edit:
    lists = editable_lists(policy)
    rel = str(change.get("list", ""))
    if rel not in lists:
        raise EditError(
            f"{rel or 'No list'} is not one of the school's own list files: "
            f"{', '.join(lists) or 'the policy has none'}."
        )
    entry = list_entry(lists[rel], str(change.get("value", "")))
    before = _read(policy, rel)
    lines = before.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if _entry_of(line) == entry.lower()]
    if adding:
        if found:
            raise EditError(f"{entry} is already in {rel}.")
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(entry + "\n")
        summary = f"Add {entry} to {rel}"
    else:
        if not found:
            raise EditError(f"{entry} is not in {rel}.")
        lines = [line for i, line in enumerate(lines) if i not in found]
        summary = f"Remove {entry} from {rel}"
    return Edit(summary, {rel: (before, "".join(lines))})


def _entry_of(line: str) -> str:
    return line.split("#", 1)[0].strip().lower().removeprefix("*.")


# -- the policy YAML -------------------------------------------------------------------


def _category_edit(policy: Policy, change: dict[str, Any], *, adding: bool) -> Edit:
    profile, category = str(change.get("profile", "")), str(change.get("category", ""))
    if profile not in policy.profiles:
        raise EditError(
            f"{profile or 'No profile'} is not a profile: {', '.join(policy.profiles)}."
        )
    if category not in policy.categories:
        raise EditError(f"{category or 'No category'} is not a category in the policy.")
    number = _rule_number(change.get("rule"))
    rel, text, raw = _policy_yaml(policy)
    rules = _dig(raw, "profiles", profile, "rules")
    if not isinstance(rules, LList) or not 1 <= number <= len(rules):
        raise EditError(f"Profile {profile} has no rule {number} of its own.")
    rule = rules[number - 1]
    action = next((a for a in ("block", "allow") if isinstance(rule, LMap) and a in rule), None)
    if action is None:
        raise EditError(f"Rule {number} of {profile} neither blocks nor allows.")
    names = rule[action]
    key_line = rule.at(action).line
    if isinstance(names, LMap):
        if not isinstance(names.get("categories"), LList):
            raise EditError(f"Rule {number} of {profile} has no categories list to edit.")
        key_line, names = names.at("categories").line, names["categories"]
    if not isinstance(names, LList):
        raise EditError(f"Rule {number} of {profile}: its {action} is not a list of categories.")
    present = [str(n) for n in names]
    if adding == (category in present):
        raise EditError(
            f"{category} is {'already' if adding else 'not'} in rule {number} of {profile}."
        )
    lines = text.splitlines(keepends=True)
    lines = _edit_sequence(lines, names, key_line, present, category, adding=adding)
    verb = "Add" if adding else "Remove"
    label = rule.get("name") or f"rule {number}"
    summary = f"{verb} {category} {'to' if adding else 'from'} {profile}'s {action} rule ({label})"
    return Edit(summary, {rel: (text, "".join(lines))})


def _edit_sequence(
    lines: list[str], names: LList, key_line: int, present: list[str], item: str, *, adding: bool
) -> list[str]:
    """Add or remove one item of a YAML list: a block list ("- name" lines) loses or gains a
    line; a flow list on one line ("[a, b]") is rewritten on that line."""
    item_lines = {names.at(i).line for i in range(len(names))}
    block = bool(names) and re.match(r"^\s*-\s", lines[names.where.line - 1]) is not None
    if not block and (not names or item_lines == {names.where.line}):
        index = names.where.line - 1 if names else key_line - 1
        wanted = [*present, item] if adding else [n for n in present if n != item]
        new, count = re.subn(r"\[[^\]]*\]", "[" + ", ".join(wanted) + "]", lines[index], count=1)
        if not count:
            raise EditError("That list is written in a way this page can't edit: edit the file.")
        return [*lines[:index], new, *lines[index + 1 :]]
    if len(item_lines) != len(names) or key_line in item_lines:
        raise EditError("That list is written in a way this page can't edit: edit the file.")
    if adding:
        last = names.at(len(names) - 1).line - 1
        prefix = re.match(r"^(\s*-\s*)", lines[last])
        if prefix is None:
            raise EditError("That list is written in a way this page can't edit: edit the file.")
        return [*lines[: last + 1], f"{prefix.group(1)}{item}\n", *lines[last + 1 :]]
    drop = names.at(present.index(item)).line - 1
    return [*lines[:drop], *lines[drop + 1 :]]


def _schedule_edit(policy: Policy, change: dict[str, Any]) -> Edit:
    name = str(change.get("schedule", ""))
    if name not in policy.schedules:
        raise EditError(
            f"{name or 'No schedule'} is not a schedule: {', '.join(policy.schedules)}."
        )
    times = [str(t).strip() for t in change.get("times", []) if str(t).strip()]
    bad = [t for t in times if not _TIME_RANGE.match(t)]
    if bad:
        raise EditError(f"Times are ranges like 12:00-13:15, not {', '.join(bad)}.")
    rel, text, raw = _policy_yaml(policy)
    schedule = _dig(raw, "schedules", name)
    if not isinstance(schedule, LMap):
        raise EditError(f"Schedule {name} is not written as a mapping: edit the file.")
    lines = text.splitlines(keepends=True)
    value = "[" + ", ".join(f'"{t}"' for t in times) + "]"
    if "times" in schedule:
        index = schedule.at("times").line - 1
        old = schedule["times"]
        if isinstance(old, LList) and any(old.at(i).line != index + 1 for i in range(len(old))):
            raise EditError(f"Schedule {name}'s times span several lines: edit the file.")
        new, count = re.subn(
            r"(\btimes:\s*)(\[[^\]]*\]|\"[^\"]*\"|[^\s#]+)", r"\g<1>" + value, lines[index], count=1
        )
        if not count:
            raise EditError(f"Schedule {name}'s times are written in a way this page can't edit.")
        lines[index] = new
        if not times:
            del lines[index]  # no times: all day
    elif times:
        last = max(w.line for w in schedule.member_where.values())
        indent = re.match(r"^(\s*)", lines[last - 1])
        lines.insert(last, f"{indent.group(1) if indent else ''}times: {value}\n")
    else:
        raise EditError(f"Schedule {name} already has no times (all day).")
    words = ", ".join(times) if times else "all day"
    return Edit(f"Schedule {name}: {words}", {rel: (text, "".join(lines))})


def _rule_number(raw: Any) -> int:
    try:
        return int(str(raw))
    except ValueError:
        raise EditError("Say which rule, by its number in the profile (1 is the first).") from None


def _policy_yaml(policy: Policy) -> tuple[str, str, Any]:
    rel = policy.path.name
    try:
        return rel, _read(policy, rel), load_located(policy.path)
    except PolicySyntaxError as exc:
        raise EditError(f"The policy file can't be read: {exc}") from None


def _dig(raw: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(raw, LMap) or key not in raw:
            return None
        raw = raw[key]
    return raw


def _read(policy: Policy, rel: str) -> str:
    try:
        return (policy.path.parent / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EditError(f"{rel} can't be read: {exc}") from None


# -- checking and writing --------------------------------------------------------------


def validate(policy: Policy, edit: Edit) -> Policy:
    """Load the policy as it would be after `edit`, in a temporary overlay of its folder;
    EditError with the loader's message (naming the real files) if it breaks."""
    root = policy.path.parent
    with tempfile.TemporaryDirectory(prefix="schoolgate-change-") as tmp:
        top = Path(tmp) / "policy"
        for rel, (_, after) in edit.texts.items():
            _overlay(root, top, Path(rel).parts, after)
        if not (top / policy.path.name).exists():
            _overlay(root, top, (policy.path.name,), None)
        try:
            return load_policy(top / policy.path.name)
        except PolicyError as exc:
            message = str(exc).replace(str(top.resolve()), str(root)).replace(str(top), str(root))
            raise EditError(
                f"This change would break the policy, so it is refused.\n{message}"
            ) from None


def _overlay(root: Path, top: Path, parts: tuple[str, ...], text: str | None) -> None:
    """Make `top` look like `root`, with real folders down to parts[-1] and that file
    written (or linked, text None); everything else a link to the original."""
    here, there = root, top
    for depth, part in enumerate(parts):
        if not there.is_dir() or there.is_symlink():
            if there.is_symlink():
                there.unlink()
            there.mkdir(parents=True)
            for entry in here.iterdir():
                (there / entry.name).symlink_to(entry)
        here, there = here / part, there / part
        if depth == len(parts) - 1:
            if there.is_symlink() or there.exists():
                there.unlink()
            if text is None:
                there.symlink_to(here)
            else:
                there.write_text(text, encoding="utf-8")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step (the gateway's watcher never reads half a file), keeping
    its permissions."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "KINDS",
    "Edit",
    "EditError",
    "editable_lists",
    "files_hash",
    "list_entry",
    "plan",
    "text_hash",
    "unified_diff",
    "validate",
    "write_atomically",
]
