"""Option values mitmproxy cannot parse from `--set` text.

mitmproxy turns `--set name=value` into str, int, bool, Optional[str|int] or Sequence[str]
values only; an option declared as float makes start-up fail ("Unsupported option type").
So a duration is declared as str and read here, with an error naming the option.
"""

from __future__ import annotations

import math

from mitmproxy import ctx, exceptions


def seconds(name: str, minimum: float = 0.0) -> float:
    """The option `name` as a number of seconds (e.g. "5", "0.5"), at least `minimum`."""
    text = str(getattr(ctx.options, name)).strip()
    try:
        value = float(text)
    except ValueError:
        raise exceptions.OptionsError(
            f"{name}: '{text}' is not a number of seconds (e.g. 5 or 0.5)"
        ) from None
    if not math.isfinite(value) or value < minimum:
        raise exceptions.OptionsError(
            f"{name}: '{text}' must be a number of seconds of at least {minimum:g}"
        )
    return value
