"""Which replica of a model's engine gets an item: prefix affinity, least-loaded when saturated.

Items that share a long prompt prefix (one problem's CoTs on one model; every variant of one
source CoT on one target: full, without answer, prefixes) should land on the same replica, whose
prefix cache then holds that prefix: spread over replicas, each one prefills it again.  A request
names its group in ``affinity`` (the stages set (problem, source, sample)); without it the group
is its prompt and system message.  The replica is a stable hash of (model, group) — the same in
every process and run, unlike Python's ``hash`` — and an item goes elsewhere (least loaded) only
when that replica already holds a full batch (``limit`` items in flight) and another holds fewer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pipeline.engine.protocol import AnswerRequest, GenerateRequest, ProposeRequest, ScoreRequest, ThinkRequest


def affinity_key(model: str, req: object) -> tuple | None:
    """The routing group of one engine request (None: a request without a prompt, e.g. a query)."""
    if isinstance(req, (GenerateRequest, AnswerRequest)) and req.affinity is not None:
        return (model, "affinity", tuple(req.affinity))
    if isinstance(req, (GenerateRequest, AnswerRequest, ThinkRequest, ProposeRequest, ScoreRequest)):
        return (model, "prompt", req.prompt, req.system)
    return None


def stable_index(key: tuple, n: int) -> int:
    """A replica index for ``key`` that never depends on the process (sha256, not ``hash``)."""
    h = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(h[:8], "little") % n


def pick_replica(load: Sequence[int], key: tuple | None, limit: int) -> int:
    """The replica for one item: its affinity replica unless that one is saturated (module docstring)."""
    n = len(load)
    least = min(range(n), key=load.__getitem__)
    if n == 1 or key is None:
        return least
    i = stable_index(key, n)
    if load[i] >= max(1, limit) and load[least] < load[i]:
        return least
    return i
