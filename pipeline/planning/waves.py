"""Which engines are resident together: the waves a run's models go through when they do not all fit.

:func:`plan_stage_waves` is pure (the planner's schedule, what is loaded, and a ``fits`` test in;
groups of models out), so the streaming runner (:mod:`pipeline.stages.runner`) and the tests
share it.
"""

from __future__ import annotations

from typing import Any, Callable


def plan_stage_waves(
    stage: str, models: list[str], schedule: Any, loaded: set[str], fits: Callable[[list[str]], bool]
) -> list[list[str]]:
    """Groups of models that run one after another in ``stage`` (each group resident at once).

    All at once when they fit together.  Otherwise the planned waves of the
    :class:`pipeline.planning.schedule.Schedule` in which ``stage`` runs, each split
    further if it does not fit (``fits`` also applies ``ray.max_concurrent_engines``),
    then models the schedule does not place in this stage packed first-fit.
    Groups holding an engine that is already loaded go first (e.g. the last
    generate wave's models start the transfer stage while still loaded).
    """
    models = list(dict.fromkeys(models))
    if not models:
        return []
    if fits(models):
        return [models]
    groups: list[list[str]] = []
    seen: set[str] = set()
    for w in schedule.waves if schedule is not None else []:
        g = [p.model for p in w.placements if p.model in models and p.model not in seen and stage in p.stages]
        if g:
            groups.append(g)
            seen |= set(g)
    rest = [m for m in models if m not in seen]
    if rest:
        groups.append(rest)
    waves: list[list[str]] = []
    for g in groups:
        split: list[list[str]] = []
        for m in g:
            for w in split:
                if fits(w + [m]):
                    w.append(m)
                    break
            else:
                split.append([m])
        waves += split
    return sorted(waves, key=lambda w: not any(m in loaded for m in w))
