"""`changes.approvers`: the roles that approve filtering changes; defaults, and a mistake
named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addons.core.policy.load import PolicyError, load_policy
from tests.conftest import copy_policy


def with_changes(tmp_path: Path, section: str) -> Path:
    path = copy_policy(tmp_path)
    path.write_text(path.read_text() + "\n" + section)
    return path


def test_default_is_the_dsl_and_the_it_provider(tmp_path: Path) -> None:
    assert load_policy(copy_policy(tmp_path)).changes.approvers == {"dsl", "it"}


def test_the_school_names_its_own(tmp_path: Path) -> None:
    path = with_changes(tmp_path, "changes:\n  approvers: [headteacher, Deputy]\n")
    assert load_policy(path).changes.approvers == {"headteacher", "deputy"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("changes:\n  approvers: [dsl, governor]\n", "governor is not a role that approves"),
        ("changes:\n  approvers: []\n", "needs at least one role"),
        ("changes:\n  approve: [dsl]\n", "approve"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(with_changes(tmp_path, section))
