"""Checks of the command line's Hydra overrides before Hydra sees them.

* The same key (or config group) given twice is an error: Hydra would silently keep the last one,
  and a user who wrote both meant something.
* A value Hydra's override lexer cannot read because it holds characters of the grammar (a space,
  a bracket, a comma, a colon of a Windows path, ``=``): the fix is to quote it, which
  :func:`quote_hint` says.
"""

from __future__ import annotations

import re
from typing import Optional

from pipeline.config.schemas import ConfigError

# Characters of Hydra's override grammar that end an unquoted value (or start a list/dict/function).
_GRAMMAR = re.compile(r"[\s\[\]{}(),='\"\\:]")


def override_key(o: str) -> str:
    return o.split("=", 1)[0].lstrip("+~").strip()


def check_overrides(overrides: list[str]) -> None:
    """The same key or config group given twice -> one line naming both."""
    seen: dict[str, str] = {}
    prev = None
    for o in overrides:
        if "=" not in o and prev is not None and not o.startswith(("-", "~", "+")):
            # the shell split an unquoted value with a space: `dataset.path=/my data/x.jsonl`
            key, value = prev.split("=", 1)
            raise ConfigError(
                f"{o!r} is not an override (key=value); a value with spaces must be quoted, "
                f"e.g. '{key}=\"{value} {o}\"'"
            )
        prev = o if "=" in o else None
        if "=" not in o or o.startswith("hydra."):
            continue
        k = override_key(o)
        if k in seen and seen[k] != o:
            raise ConfigError(f"{k} is given twice ({seen[k]!r} and {o!r}); keep one of them")
        seen[k] = o


def quote_hint(override: str) -> Optional[str]:
    """For an override whose *value* the lexer rejects: how to quote it (None if quoting would not help)."""
    if "=" not in override:
        return None
    key, value = override.split("=", 1)
    if not value or value[0] in "[{'\"" or not _GRAMMAR.search(value):
        return None
    if "'" in value:
        return None
    return f"quote it: '{key}=\"{value}\"'"
