"""Small checks the config schemas' ``validate()`` methods share: names from a set, numbers in range.

Each raises :class:`~pipeline.config.schemas.ConfigError` as ``<where>=<value>: <what is wrong>; <fix>``,
naming the allowed values and the closest one (did-you-mean), so a typo is fixed from the message alone.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from pipeline.errors import UserError, did_you_mean


def choose(where: str, value: Any, allowed: Iterable[Any], what: str = "value") -> None:
    """``value`` must be one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise _error(f"{where}={value!r}: unknown {what}{did_you_mean(value, allowed)}; choose one of {allowed}")


def choose_each(where: str, values: Optional[Iterable[Any]], allowed: Iterable[Any], what: str = "value") -> None:
    """Every item of the list ``values`` must be one of ``allowed``."""
    if values is None:
        return
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _error(f"{where}={values!r}: must be a list; write {where}=[a,b]")
    allowed = list(allowed)
    for v in values:
        if v not in allowed:
            raise _error(f"{where} has {v!r}: unknown {what}{did_you_mean(v, allowed)}; choose from {allowed}")


def number(
    where: str,
    value: Any,
    lo: Optional[float] = None,
    hi: Optional[float] = None,
    *,
    integer: bool = False,
    lo_open: bool = False,
    hi_open: bool = False,
    hint: str = "",
) -> None:
    """``value`` must be a number (an int when ``integer``) within the given bounds."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise _error(f"{where}={value!r}: must be {kind}; {hint or f'set {where}=<{kind[2:].strip()}>'}")
    lo_bad = lo is not None and (value <= lo if lo_open else value < lo)
    hi_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if lo_bad or hi_bad:
        lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        hi_s = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        rng = (
            f"in {lo_s}, {hi_s}"
            if lo is not None and hi is not None
            else (f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else f"{'<' if hi_open else '<='} {hi:g}")
        )
        raise _error(f"{where}={value!r}: out of range; must be {rng}" + (f" ({hint})" if hint else ""))


def _error(msg: str) -> UserError:
    from pipeline.config.schemas import ConfigError

    return ConfigError(msg)
