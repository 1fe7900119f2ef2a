"""The policy's `checks:` section: which suite the termly check runs, who is reminded, when.

Called by `load.load_policy`; problems go to its checker, so a broken suite is a
broken policy, named with its file and line like any other mistake.

    checks:
      suite: checks/termly.yaml        # relative to the policy file
      remind: [it.support, mrs.patel]  # user names (notifications.contacts gives the address)
      due_after_days: 14               # a term's check is due this long after the term starts
      profiles: [ks2, early_years, staff, guest]   # each term's check covers these (default: all)
"""

from __future__ import annotations

from typing import Any

from proxy_addons.core.policy.check_suite_file import SuiteError, load_suite, suite_problems
from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.model import Checks, Profile
from proxy_addons.core.policy.yaml_reader import Where

KEYS = ("suite", "remind", "due_after_days", "profiles")


def load_checks(ck: Checker, raw: Any, where: Where, profiles: dict[str, Profile]) -> Checks:
    if raw is None:
        return Checks()
    m = ck.mapping(raw, where, "checks", KEYS)
    if m is None:
        return Checks()
    suite = None
    if m.get("suite") is not None:
        suite = ck.path(m["suite"], m.at("suite"), "the check suite")
        if suite is not None:
            try:
                loaded = load_suite(suite)
            except SuiteError as exc:
                for place, message in exc.problems:
                    ck.fail(place, message)
            else:
                for place, message in suite_problems(loaded, frozenset(profiles)):
                    ck.fail(place, message)
    remind = frozenset(
        str(n).strip().lower() for n in ck.listing(m.get("remind"), m.at("remind"), "remind") or []
    )
    days = m.get("due_after_days", 14)
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 120:
        ck.fail(m.at("due_after_days"), "due_after_days should be a whole number from 0 to 120")
        days = 14
    covered = frozenset(
        str(n).strip() for n in ck.listing(m.get("profiles"), m.at("profiles"), "profiles") or []
    )
    for name in sorted(covered - set(profiles)):
        ck.fail(m.at("profiles"), f"'{name}' is not a profile defined under 'profiles:'")
    return Checks(suite=suite, remind=remind, due_after_days=days, profiles=covered)
