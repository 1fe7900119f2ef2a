"""docs/monitoring.md's snippet for checking a webhook call, run against a real delivery:
it must accept what the gateway sends and refuse a changed body or an old call."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from proxy_addons.alerts.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookSettings,
    sign_webhook,
)
from tests.alerts.test_notify import SECRET, _Receiver, hook_url, note
from tests.alerts.test_notify import receiver as receiver  # noqa: F401 (the fixture)
from tests.conftest import ROOT


def _documented_check() -> Callable[..., bool]:
    text = (ROOT / "docs" / "monitoring.md").read_text()
    section = text[text.index("### Checking that a webhook call is really from the gateway") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the section has a Python snippet"
    names: dict[str, Any] = {}
    exec(compile(found.group(1), "docs/monitoring.md", "exec"), names)  # noqa: S102
    return names["is_from_schoolgate"]


def test_the_documented_check_verifies_a_real_delivery(receiver: _Receiver) -> None:
    is_from_schoolgate = _documented_check()
    WebhookChannel(WebhookSettings(hook_url(receiver), SECRET, timeout=5)).send(note())
    [got] = receiver.deliveries
    headers = {TIMESTAMP_HEADER: got.timestamp, SIGNATURE_HEADER: got.signature}
    # The secret as a receiver reads it from its copy of the file, new line and all.
    assert is_from_schoolgate(SECRET + b"\n", headers, got.body)

    assert not is_from_schoolgate(SECRET, headers, got.body.replace(b"unblock", b"Unblock"))
    assert not is_from_schoolgate(b"another secret", headers, got.body)
    old = str(int(got.timestamp) - 301)  # signed rightly, but too old: a replay
    replayed = {TIMESTAMP_HEADER: old, SIGNATURE_HEADER: sign_webhook(SECRET, old, got.body)}
    assert not is_from_schoolgate(SECRET, replayed, got.body)
    assert not is_from_schoolgate(SECRET, {SIGNATURE_HEADER: got.signature}, got.body)
