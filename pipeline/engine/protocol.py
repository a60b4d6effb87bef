"""The whole contract between stages and engines: typed requests, typed results, and the protocols.

Engines are continuously fed: every operation takes ONE item and is a coroutine, so the driver keeps
many items in flight per engine and each returns as it finishes (:mod:`pipeline.engine.stream`).
Two engines implement :class:`Engine`: :class:`pipeline.engine.vllm_engine.ModelEngine` and
:class:`pipeline.engine.fake.FakeEngine`.

Three pools implement :class:`Pool`: :class:`pipeline.engine.ray_pool.EnginePool` (real vLLM engines
in Ray actors, placed by :mod:`pipeline.planning`), and the in-process
:class:`pipeline.engine.local.LocalPool` with its test double :class:`pipeline.engine.fake.FakePool`.
A stage reaches an engine only by handing a pool a request: ``await pool.op(model, request)``
(the streaming path) or the blocking ``pool.call(model, request)`` (small queries: info, stats, a
template).  Every request is an :class:`EngineOp`: it knows which engine method runs it
(:meth:`EngineOp.run`), so there is no dispatch by method name and a request carries its result
type (``await pool.op(m, GenerateRequest(...))`` is a :class:`GenerateResult` to a type checker).
A request travels to a Ray actor as it is (a picklable dataclass) and runs there.

Names are the same end to end: ``thought_budget`` is the thinking budget from
``generate.thought_budget`` / ``ensemble.thought_budget`` to the engine, ``answer_budget`` the
answer budget from ``generate.answer_budget`` / ``transfer.answer_budget``.
``pipeline/engine/conformance.py`` has mypy check every engine and pool against these protocols.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Iterable, Literal, Optional, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from pipeline.config import SamplingConfig

T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

Phase = Literal["own", "transfer"]  # whose CoT an answer follows (see pipeline.engine.messages)
ScoreMode = Literal["cached", "naive", "paper"]  # see ModelEngine.score_ids
# How the answer after an engine's own CoT is prompted: "ids" (the thinking prompt + the generated ids +
# the close tag, what the prefix cache holds) or "text" (the cleaned CoT re-rendered and re-tokenized).
AnswerBy = Literal["ids", "text"]


def in_flight_bound(max_in_flight: int, max_num_seqs: int) -> int:
    """Requests in flight per engine replica: ``stream.max_in_flight``, or by default twice the
    engine's batch width (``max_num_seqs``), so its batch stays full while results travel back."""
    return max(1, int(max_in_flight) or 2 * int(max_num_seqs))


@dataclass(frozen=True)
class Sampling:
    """Resolved decoding settings for one request (from a model's SamplingConfig)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: SamplingConfig, seed: Optional[int] = None) -> Sampling:
        return cls(cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p, cfg.repetition_penalty, seed)


GREEDY = Sampling(0.0, 1.0, -1)


# ---------------------------------------------------------------------- results
@dataclass
class ThinkResult:
    cot: str
    cot_tokens: int
    finish_reason: str  # "stop": the model closed its thinking (or ended its turn); "length": we close it; "error"
    forced_close: bool
    error: Optional[str] = None
    think_prompt_tokens: Optional[int] = None  # the thinking request's prompt tokens
    think_cached_tokens: Optional[int] = None  # of which the prefix cache served (vLLM's num_cached_tokens)


@dataclass
class AnswerResult:
    answer_text: Optional[str]
    prompt_tokens: int
    answer_tokens: int
    finish_reason: Optional[str]  # vLLM's ("stop", "length"), or "error"
    error: Optional[str] = None
    cached_tokens: Optional[int] = None  # prompt tokens the prefix cache served


@dataclass
class GenerateResult:
    """A two-phase item: the CoT (``cot_*``) and the answer after it; the answer fields stay None on an error."""

    cot: str
    cot_tokens: int
    cot_finish_reason: str  # ThinkResult.finish_reason, or "given" (the CoT came with the request)
    forced_close: bool
    answer_text: Optional[str] = None
    prompt_tokens: Optional[int] = None
    answer_tokens: Optional[int] = None
    finish_reason: Optional[str] = None
    error: Optional[str] = None
    # Engine telemetry (schema.GENERATE_ROWS): the thinking request's prompt and cached tokens, and the
    # answer request's cached tokens (``prompt_tokens`` is the answer request's prompt).
    think_prompt_tokens: Optional[int] = None
    think_cached_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    texts: list[str]
    token_ids: list[list[int]]
    finish_reasons: list[Optional[str]]


@dataclass
class Proposal:
    """Candidate continuations of a growing CoT: raw texts (the close tag kept when written), and
    per text whether it closed the thinking; ``exhausted``: nothing was run (budget spent, or the
    context does not fit: then ``error``)."""

    texts: list[str]
    closed: list[bool]
    cot_tokens: int
    exhausted: bool = False
    error: Optional[str] = None
    context_tokens: Optional[int] = None  # thinking prompt + CoT in this model's tokens (KV admission)


@dataclass
class CandidateScore:
    """One candidate's mean NLL of its own tokens (``seq_mean_nll``: over prompt + CoT + candidate,
    ``mode="paper"`` only); ``mean_nll`` is inf with ``error`` when context + candidate cannot fit."""

    mean_nll: float
    n_tokens: int
    seq_mean_nll: Optional[float] = None
    error: Optional[str] = None


# --------------------------------------------------------------------- requests
@dataclass(frozen=True)
class ThinkRequest:
    """Write a CoT within ``thought_budget`` tokens, leaving ``reserve`` answer tokens in the context."""

    prompt: str
    sampling: Sampling
    thought_budget: int
    system: Optional[str] = None
    reserve: int = 0

    def run(self, engine: Engine) -> Awaitable[ThinkResult]:
        return engine.think(self)


@dataclass(frozen=True)
class AnswerRequest:
    """Answer after ``cot`` placed in the model's own thinking format (``""``: Empty CoT)."""

    prompt: str
    cot: str
    sampling: Sampling
    answer_budget: int
    system: Optional[str] = None
    phase: Phase = "own"
    answer_prefix: Optional[str] = None
    # Replica routing group (pipeline.engine.routing): items sharing a prefix share a replica.
    affinity: Optional[tuple] = None

    def run(self, engine: Engine) -> Awaitable[AnswerResult]:
        return engine.answer(self)


@dataclass(frozen=True)
class GenerateRequest:
    """Think (unless ``cot`` is given), then answer after that CoT."""

    prompt: str
    sampling: Sampling
    thought_budget: int
    answer_budget: int
    system: Optional[str] = None
    answer_prefix: Optional[str] = None
    cot: Optional[str] = None  # None: think first; "" is Empty CoT
    affinity: Optional[tuple] = None  # replica routing group (pipeline.engine.routing)
    answer_by: AnswerBy = "ids"  # the answer after the engine's own CoT: by its token ids, or by text

    def run(self, engine: Engine) -> Awaitable[GenerateResult]:
        return engine.generate(self)


@dataclass(frozen=True)
class CompleteRequest:
    """Raw continuations of ``text`` (or of token ``ids``); greedy unless ``sampling`` is given."""

    max_tokens: int
    text: Optional[str] = None
    ids: Optional[list[int]] = None
    sampling: Optional[Sampling] = None
    n: int = 1
    stop: Optional[list[str]] = None
    ignore_eos: bool = False

    def run(self, engine: Engine) -> Awaitable[Completion]:
        return engine.complete(self)


@dataclass(frozen=True)
class ProposeRequest:
    """``n`` candidate next sentences of at most ``max_candidate_tokens`` after the CoT so far;
    ``thought_budget`` (first generator only) caps the whole CoT in this model's tokens."""

    prompt: str
    cot: str
    n: int
    max_candidate_tokens: int
    sampling: Sampling
    system: Optional[str] = None
    thought_budget: Optional[int] = None

    def run(self, engine: Engine) -> Awaitable[Proposal]:
        return engine.propose(self)


@dataclass(frozen=True)
class ScoreRequest:
    """Score candidate sentences after the CoT so far (a closing one with the scorer's close tag)."""

    prompt: str
    cot: str
    candidates: list[str]
    closes: list[bool]
    system: Optional[str] = None
    mode: ScoreMode = "cached"

    def run(self, engine: Engine) -> Awaitable[list[CandidateScore]]:
        return engine.score_texts(self)


@dataclass(frozen=True)
class TemplateQuery:
    """The engine's chat-rendered prompt around a placeholder (``Engine.chat_template_marker``)."""

    async def run(self, engine: Engine) -> Optional[str]:
        return engine.chat_template_marker()


@dataclass(frozen=True)
class InfoQuery:
    async def run(self, engine: Engine) -> dict[str, Any]:
        return engine.info()


@dataclass(frozen=True)
class StatsQuery:
    async def run(self, engine: Engine) -> dict[str, Any]:
        return engine.get_stats()


# -------------------------------------------------------------------- protocols
@runtime_checkable
class Engine(Protocol):
    """One model's engine.  Each per-item operation takes its request type and returns its result type."""

    async def generate(self, r: GenerateRequest) -> GenerateResult: ...
    async def think(self, r: ThinkRequest) -> ThinkResult: ...
    async def answer(self, r: AnswerRequest) -> AnswerResult: ...
    async def complete(self, r: CompleteRequest) -> Completion: ...  # the LLM answer filter
    async def propose(self, r: ProposeRequest) -> Proposal: ...  # ensemble: candidate next sentences
    async def score_texts(self, r: ScoreRequest) -> list[CandidateScore]: ...  # ensemble NLLs
    def chat_template_marker(self) -> Optional[str]: ...  # rendered chat prompt around a placeholder
    def get_stats(self) -> dict[str, Any]: ...
    def info(self) -> dict[str, Any]: ...


class EngineOp(Protocol[R_co]):
    """A request: runs itself on an engine (in the driver, or inside the engine's Ray actor)."""

    def run(self, engine: Engine) -> Awaitable[R_co]: ...


@runtime_checkable
class Pool(Protocol):
    """Engines by model short name: ``await op(...)`` per item, placement, telemetry."""

    where: dict[str, dict]  # model -> where its engine runs (node, ip, pid); empty when in-process
    waves: list[dict]  # engine waves as they ran (appended by the stage runner)
    actors: dict[str, Any]  # engines currently resident (Ray actors per model; empty for in-process pools)

    async def op(self, name: str, req: EngineOp[T]) -> T: ...  # one item, awaited to its end
    def call(self, name: str, req: EngineOp[T]) -> T: ...  # blocking, for small queries

    def schedule(self) -> Optional[Any]: ...  # the planned wave Schedule, None when nothing is planned
    def fits(self, names: Iterable[str]) -> bool: ...  # can these engines be resident together?
    def ensure(self, names: Iterable[str]) -> list[str]: ...  # make resident; the models stopped for room
    def locate(self, names: Iterable[str]) -> None: ...  # refresh ``where`` after restarts
    def stats(self) -> dict[str, dict]: ...  # engine counters by model
    def placement_info(self) -> Optional[dict]: ...  # where engines ran and for how long; None: no placement
    def stop(self, names: Optional[Iterable[str]] = None) -> None: ...
