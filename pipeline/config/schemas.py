"""Typed configuration: dataclass schemas registered in Hydra's ConfigStore.

Every field is documented where it is declared.  ``validate()`` methods run
after Hydra composes the YAML files (``load_run_config``) and raise
:class:`ConfigError` naming the bad value and the fix.

Fields that do not change results (placement, memory, batch sizes) carry
``metadata={"hash": False}``; :func:`hash_fields` drops them so that artifact
names depend on exactly the fields that change outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from pipeline.config.checks import choose, choose_each, number
from pipeline.config.plugins import plugins
from pipeline.config.served import ServedConfig
from pipeline.errors import UserError

DTYPES = ("auto", "bfloat16", "float16", "float32", "half", "float")


class ConfigError(UserError):
    """A configuration value is wrong; the message names it and the fix."""


def nohash(default: Any = MISSING, **kw: Any) -> Any:
    """A dataclass field excluded from artifact hashes (does not change results)."""
    if "default_factory" in kw:
        return field(metadata={"hash": False}, **kw)
    return field(default=default, metadata={"hash": False}, **kw)


@dataclass
class SamplingConfig:
    """Decoding settings; written out in full for every model (never inherited)."""

    temperature: float = MISSING  # 0 = greedy
    top_p: float = MISSING  # nucleus mass in (0, 1]
    top_k: int = MISSING  # -1 or 0 = no top-k cut
    min_p: float = 0.0  # vLLM min_p; 0 disables
    repetition_penalty: float = 1.0  # 1 disables
    seed: int = 0  # per-request seeds derive from this, the problem and the sample index

    def validate(self, where: str) -> None:
        number(f"{where}.temperature", self.temperature, 0, hint="0 = greedy")
        number(f"{where}.top_p", self.top_p, 0, 1, lo_open=True, hint="use 1.0 to disable")
        number(f"{where}.top_k", self.top_k, -1, integer=True, hint="-1/0 = off")
        number(f"{where}.min_p", self.min_p, 0, 1, hint="0 disables")
        number(f"{where}.repetition_penalty", self.repetition_penalty, 0, lo_open=True, hint="1 disables")
        number(f"{where}.seed", self.seed, 0, integer=True)


@dataclass
class TinyModelSpec:
    """Recipe for a random-weight test model built locally (no hub)."""

    family: str = "llama"  # "llama" or "qwen2" (transformers architectures vLLM runs)
    hidden_size: int = 128  # head_dim = hidden/heads must be >= 64 on the CPU engine
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 512  # BPE vocabulary trained on the spot
    seed: int = 0  # weight init seed; different seeds = different "models"

    def validate(self, where: str) -> None:
        choose(f"{where}.family", self.family, ("llama", "qwen2"), "tiny model family")
        for f in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size"):
            number(f"{where}.{f}", getattr(self, f), 1, integer=True)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"{where}.hidden_size={self.hidden_size}: must be a multiple of "
                f"num_heads={self.num_heads}; change one of them"
            )
        number(f"{where}.seed", self.seed, 0, integer=True)


@dataclass
class ModelProtocol:
    """How prompts are built for this model (pipeline.engine.messages). Filled from the run's
    ``protocol`` by :func:`apply_protocol`; set it there, not per model."""

    system_role: str = "system"  # system | model_identity (gpt-oss template argument) | merge (into the user turn)
    chat_template_kwargs: dict = field(default_factory=dict)  # own runs, e.g. {reasoning_effort: low}
    transfer_chat_template_kwargs: Optional[dict] = None  # answering after another model's CoT; null = same
    cot_strings: str = "format"  # format (our tags) | study (the study's literal strings)
    double_think_open: bool = False  # bug-compat: keep the study's second <think> (needs cot_strings=study)
    harmony_channels_as_text: bool = False  # bug-compat: gpt-oss channels as plain text (cot_strings=study)
    thought_budget_plus_prompt: bool = False  # think budget = thought_budget + prompt tokens (the study's)
    sampled_answer: bool = False  # the answer after the model's own Sampled CoT is sampled too (the study's)


@dataclass
class ModelConfig:
    """One model served by one engine actor."""

    name: str = MISSING  # short name used in every table ("QwQ", "tiny-a")
    path: str = MISSING  # local folder or hub id of the weights
    thinking_format: str = MISSING  # registry name: think_tags, openthoughts, harmony, plain
    dtype: str = "auto"  # torch dtype for the engine: auto, bfloat16, float16, float32
    max_model_len: int = 4096  # context window given to vLLM (prompt + CoT + answer)
    greedy: SamplingConfig = field(default_factory=SamplingConfig)  # Default CoT
    sampled: SamplingConfig = field(default_factory=SamplingConfig)  # Sampled CoT
    system_prompt: Optional[str] = None  # prepended as a system turn when set
    chat_template: Optional[str] = None  # Jinja override of the tokenizer's template
    trust_remote_code: bool = False  # off unless a model really needs it
    tokenizer: Optional[str] = None  # tokenizer path if not beside the weights
    revision: Optional[str] = None  # Hugging Face revision (commit, tag, branch) of a hub `path`; null = main
    # The sampling of the model's shipped generation_config.json as HF generate merges it (unset fields
    # take GenerationConfig's defaults: top_k 50, top_p 1.0); the study's Sampled runs used it
    # (pipeline.config.study_sampling). null = HF's defaults.
    generation_config: Optional[SamplingConfig] = None
    # Provisioning: how `crosscot models prepare` builds `path` when absent.
    protocol: ModelProtocol = field(default_factory=ModelProtocol)  # filled from RunConfig.protocol
    tiny: Optional[TinyModelSpec] = None  # random tiny test model recipe
    gguf: Optional[str] = None  # name of a GGUF provisioner (e.g. "smollm2")
    # --- placement & engine sizing: do not change results ---
    tensor_parallel_size: int = nohash(1)  # GPUs per engine (one node)
    gpu_memory_utilization: float = nohash(0.9)  # vLLM GPU memory share
    kv_cache_gib: float = nohash(1.0)  # CPU engine KV cache size (VLLM_CPU_KVCACHE_SPACE)
    num_cpus: float = nohash(1.0)  # Ray CPUs reserved per actor
    memory_gib: float = nohash(0.0)  # GPU memory need per engine (planner); 0 = estimate
    params_b: float = nohash(0.0)  # parameter count in billions (planner's throughput model)
    max_num_seqs: int = nohash(64)  # vLLM batch width
    # Data-parallel engines of this model (each a full copy; requests go to the least loaded).
    replicas: int = nohash(1)
    enforce_eager: bool = nohash(True)  # skip graph capture (fast start on CPU / tests)
    enable_prefix_caching: bool = nohash(True)  # reuse shared prompt prefixes
    # KV-cache block size (tokens); null = the engine's default (16 on GPU, 128 on CPU). The prefix
    # cache reuses whole blocks only, so cached ensemble scoring re-prefills the context's partial
    # last block per candidate: smaller blocks prefill fewer tokens (CPU prefers multiples of 32).
    block_size: Optional[int] = nohash(None)
    # vllm: an in-process engine in a Ray actor; openai: an OpenAI-compatible endpoint (`served`).
    engine: str = "vllm"
    served: ServedConfig = field(default_factory=ServedConfig)
    # Tokens one engine step may schedule; null = per device (pipeline/engine/settings.py: 16384 on
    # GPU, at least max_model_len on CPU where prefill is unchunked).
    max_num_batched_tokens: Optional[int] = nohash(None)
    # vLLM engine core: inproc (in the actor's process; always on CPU), mp (a child process; CUDA), auto.
    engine_core: str = nohash("auto")
    # exact | batch_dependent | auto; filled from the run's `determinism` (pipeline/engine/determinism.py).
    determinism: str = "auto"

    def validate(self, key: str = "") -> None:
        where = f"models.{key or self.name}"
        choose(f"{where}.engine", self.engine, ("vllm", "openai"), "engine kind")
        if self.engine == "openai":
            self.served.validate(f"{where}.served")
        if not self.name or self.name is MISSING:
            raise ConfigError(f"{where}.name is empty: give the model a short name")
        if any(c in self.name for c in "+/ ,"):
            raise ConfigError(
                f"{where}.name={self.name!r}: short names may not contain '+', '/', ',' or spaces "
                "(they are used in setting labels like 'Ensemble A+B/C')"
            )
        choose(f"{where}.thinking_format", self.thinking_format, plugins().names("thinking format"), "thinking format")
        choose(f"{where}.dtype", self.dtype, DTYPES, "dtype")
        number(f"{where}.max_model_len", self.max_model_len, 64, integer=True)
        number(f"{where}.tensor_parallel_size", self.tensor_parallel_size, 1, integer=True)
        number(f"{where}.replicas", self.replicas, 1, integer=True, hint="data-parallel engines of this model")
        number(f"{where}.gpu_memory_utilization", self.gpu_memory_utilization, 0, 1, lo_open=True)
        number(f"{where}.kv_cache_gib", self.kv_cache_gib, 0, lo_open=True)
        number(f"{where}.num_cpus", self.num_cpus, 0, lo_open=True)
        number(f"{where}.memory_gib", self.memory_gib, 0, hint="0 = estimate")
        number(f"{where}.params_b", self.params_b, 0, hint="0 = unknown")
        number(f"{where}.max_num_seqs", self.max_num_seqs, 1, integer=True)
        if self.block_size is not None:
            number(f"{where}.block_size", self.block_size, 1, integer=True, hint="null = the engine's default")
        if self.max_num_batched_tokens is not None:
            number(
                f"{where}.max_num_batched_tokens",
                self.max_num_batched_tokens,
                1,
                integer=True,
                hint="null = the device's default",
            )
        choose(f"{where}.engine_core", self.engine_core, ("auto", "inproc", "mp"), "engine core")
        choose(f"{where}.determinism", self.determinism, ("auto", "exact", "batch_dependent"), "determinism")
        if self.tiny is not None and self.gguf:
            raise ConfigError(f"{where}: both tiny and gguf recipes are set; keep one (tiny=null or gguf=null)")
        if self.tiny is not None:
            self.tiny.validate(f"{where}.tiny")
        if self.gguf:
            from pipeline.provision.gguf import names as gguf_names

            choose(f"{where}.gguf", self.gguf, gguf_names(), "GGUF provisioner")
        self.greedy.validate(f"{where}.greedy")
        self.sampled.validate(f"{where}.sampled")
        if self.greedy.temperature != 0:
            raise ConfigError(f"{where}.greedy.temperature={self.greedy.temperature}: Default CoT is greedy; set 0")


@dataclass
class DatasetConfig:
    """Which benchmark to load and how much of it."""

    name: str = MISSING  # dataset plug-in: toy_arith, medcalc, gsm8k, instruction_induction, jsonl
    path: Optional[str] = None  # file or folder of the user's copy (not needed for toy_arith)
    limit: Optional[int] = None  # keep the first N problems (after shuffling when seed is set)
    seed: int = 0  # toy generation / sampling seed
    size: int = 24  # toy_arith: number of problems to generate
    options: dict = field(default_factory=dict)  # plug-in specific (column mapping, tasks, ...)

    def validate(self) -> None:
        choose("dataset.name", self.name, plugins().names("dataset"), "dataset")
        if self.limit is not None:
            number("dataset.limit", self.limit, 1, integer=True, hint="or null for all")
        number("dataset.seed", self.seed, 0, integer=True)
        number("dataset.size", self.size, 1, integer=True)
        if not isinstance(self.options, dict):
            raise ConfigError(
                f"dataset.options={self.options!r}: must be a mapping; write dataset.options.<key>=<value>"
            )
        if "on_bad_row" in self.options:
            choose("dataset.options.on_bad_row", self.options["on_bad_row"], ("raise", "skip"))


@dataclass
class GenerateConfig:
    """Stage `generate`: produce each model's own CoT and answer."""

    methods: list = field(default_factory=lambda: ["empty", "default", "sampled"])
    num_samples: int = 1  # k samples per problem for Sampled CoT
    thought_budget: int = 256  # max CoT tokens before we close the thinking ourselves
    answer_budget: int = 64  # max answer tokens after the CoT

    def validate(self) -> None:
        # (transfer and ensemble are their own stages, not generation methods)
        choose_each("generate.methods", self.methods, ("empty", "default", "sampled"), "generation method")
        for f in ("num_samples", "thought_budget", "answer_budget"):
            number(f"generate.{f}", getattr(self, f), 1, integer=True)


@dataclass
class TruncateConfig:
    """Stage `truncate`: make the "without answer" and partial variants of CoTs."""

    filter: str = "rule"  # "rule" (sentence filter), "llm" (a pool model marks sentences; rule fallback) or
    #   "rewrite" (the study's: a pool model rewrites the CoT with openai_remove_answer.py's prompt)
    filter_model: Optional[str] = None  # model name (from `models`) used when filter=llm
    # A FAILED filter call (engine error, not an unusable reply): "error" fails the run (a rerun
    # retries it); "rule" uses the rule filter for that CoT, recorded in the row's `filter` column.
    on_filter_error: str = "error"
    prefix_fractions: list = field(default_factory=list)  # e.g. [0.25, 0.5]: keep first share of sentences

    def validate(self) -> None:
        choose("truncate.filter", self.filter, ("rule", "llm", "rewrite"), "answer filter")
        choose("truncate.on_filter_error", self.on_filter_error, ("error", "rule"), "on filter error")
        for f in self.prefix_fractions:
            number("truncate.prefix_fractions[]", f, 0, 1, lo_open=True, hi_open=True)

    def variants(self) -> list[str]:
        """The CoT variants this config makes (the names transfer.variants may pick from)."""
        return ["full", "without_answer"] + [f"prefix_{float(f):g}" for f in self.prefix_fractions]


@dataclass
class TransferConfig:
    """Stage `transfer`: every source CoT variant x every target model."""

    variants: list = field(default_factory=lambda: ["full", "without_answer"])
    sources: Optional[list] = None  # source model names; null = all models
    targets: Optional[list] = None  # target model names; null = all models
    answer_budget: int = 64  # max answer tokens after the transferred CoT

    def validate(self, variants: list[str], models: list[str]) -> None:
        choose_each(
            "transfer.variants", self.variants, variants, "CoT variant (prefix_<f> needs truncate.prefix_fractions)"
        )
        choose_each("transfer.sources", self.sources, models, "model")
        choose_each("transfer.targets", self.targets, models, "model")
        number("transfer.answer_budget", self.answer_budget, 1, integer=True)


@dataclass
class EnsembleConfig:
    """Stage `ensemble`: sentence-level ensemble CoT (off unless enabled)."""

    enabled: bool = False
    generators: list = field(default_factory=list)  # model names proposing sentences
    evaluators: list = field(default_factory=list)  # model names scoring candidates
    candidates: int = 3  # candidates per generator per step
    max_candidate_tokens: int = 15  # cut back to the last sentence end
    thought_budget: int = 256  # max CoT tokens (in the first generator's tokenizer)
    max_steps: int = 64  # hard cap on sentences
    scoring: str = "mean_nll"  # "mean_nll" (candidate tokens only) or "paper" (whole-sequence ppl)
    seed: int = 0
    # The study's rules (pipeline.text.ensemble_rules), each selectable:
    sentence_rule: str = "ours"  # ours (text.cut_to_sentence) | study (no cut after a digit or a 1-4 letter word)
    join: str = "ours"  # ours (candidate text as cut) | space (" " + stripped candidate, the study's)
    top_k: Optional[int] = None  # proposals' top-k (study: 50); null = the generator's sampled.top_k
    reseed_each_step: bool = False  # study: the same seed (ensemble.seed) before every step's sampling
    # Proposals sample with: sampled (the generator's `sampled` block) | generation_config (its
    # generation_config as HF generate merges it, the study's model.generate(do_sample=True, top_k=50)).
    proposal_sampling: str = "sampled"

    def validate(self, models: list[str]) -> None:
        choose_each("ensemble.generators", self.generators, models, "model")
        choose_each("ensemble.evaluators", self.evaluators, models, "model")
        for f in ("candidates", "max_candidate_tokens", "thought_budget", "max_steps"):
            number(f"ensemble.{f}", getattr(self, f), 1, integer=True)
        choose("ensemble.scoring", self.scoring, ("mean_nll", "paper"), "ensemble scoring")
        choose(
            "ensemble.proposal_sampling", self.proposal_sampling, ("sampled", "generation_config"), "proposal sampling"
        )
        number("ensemble.seed", self.seed, 0, integer=True)
        if self.enabled and (not self.generators or not self.evaluators):
            raise ConfigError(
                "ensemble.enabled=true needs ensemble.generators and ensemble.evaluators; "
                "set both to lists of model names, or ensemble.enabled=false"
            )


@dataclass
class ScoreConfig:
    """Stage `score`: extraction, correctness, consistency and accuracy tables."""

    metrics: list = field(default_factory=lambda: ["paper", "strict"])
    judge: str = "ours"  # "ours" or "stored" (imported judgments)
    n_boot: int = 1000  # bootstrap resamples for 95% intervals
    seed: int = 0

    def validate(self) -> None:
        choose_each("score.metrics", self.metrics, plugins().names("consistency metric"), "consistency metric")
        choose("score.judge", self.judge, JUDGES, "judge")
        number("score.n_boot", self.n_boot, 0, integer=True, hint="0 = no intervals")
        number("score.seed", self.seed, 0, integer=True)


JUDGES = ("ours", "stored")  # ours: the dataset plug-in's checker; stored: imported judgments


@dataclass
class ProtocolConfig:
    """Run-wide protocol items that shape prompts (README: "Reference experiments").

    ``reference_paper`` sets the study's values (and its bug-compat flags);
    ``reference`` our corrections.  :func:`apply_protocol` copies them into
    every model's ``protocol`` (so they are part of each model's artifact hash).
    """

    name: str = "ours"  # label in provenance and the report
    cot_strings: str = "format"  # format | study: how a given CoT is placed (pipeline.engine.messages)
    double_think_open: bool = False  # bug-compat (study): "<think>" doubled after templates that open it
    harmony_channels_as_text: bool = False  # bug-compat (study): gpt-oss channels written as plain text
    reasoning_effort: Optional[str] = None  # harmony (gpt-oss) own runs: low | medium | high; null = template default
    transfer_reasoning_effort: Optional[str] = None  # harmony answering after a given CoT; null = reasoning_effort
    harmony_system_as_model_identity: bool = False  # the study's gpt-oss call: system text -> model_identity
    thought_budget_plus_prompt: bool = False  # the study's think budget: generate.thought_budget + prompt tokens
    # The study's Sampled CoT: this temperature over each model's generation_config (HF generate's
    # merge), its answer sampled too; null = each model's own `sampled` block (pipeline.config.study_sampling).
    sampled_temperature: Optional[float] = None

    def validate(self) -> None:
        if self.cot_strings not in ("format", "study"):
            raise ConfigError(f"protocol.cot_strings={self.cot_strings!r}: use format or study")
        if (self.double_think_open or self.harmony_channels_as_text) and self.cot_strings != "study":
            raise ConfigError(
                "protocol.double_think_open / harmony_channels_as_text reproduce the study's literal "
                "strings: set protocol.cot_strings=study too"
            )
        for k in ("reasoning_effort", "transfer_reasoning_effort"):
            v = getattr(self, k)
            if v not in (None, "low", "medium", "high"):
                raise ConfigError(f"protocol.{k}={v!r}: use low, medium, high or null")


def apply_protocol(run: "RunConfig") -> None:
    """Fill every model's ``protocol`` from ``run.protocol`` (harmony-only items go to harmony models),
    and its ``determinism`` from the run's (when the run sets one)."""
    p = run.protocol
    for m in run.models.values():
        if getattr(run, "determinism", "auto") != "auto":
            m.determinism = run.determinism
        harmony = m.thinking_format == "harmony"
        own = {"reasoning_effort": p.reasoning_effort} if harmony and p.reasoning_effort else {}
        tr = p.transfer_reasoning_effort
        m.protocol = ModelProtocol(
            system_role="model_identity" if harmony and p.harmony_system_as_model_identity else "system",
            chat_template_kwargs=own,
            transfer_chat_template_kwargs={"reasoning_effort": tr} if harmony and tr else None,
            cot_strings=p.cot_strings,
            double_think_open=p.double_think_open,
            harmony_channels_as_text=p.harmony_channels_as_text,
            thought_budget_plus_prompt=p.thought_budget_plus_prompt,
            sampled_answer=p.sampled_temperature is not None,
        )
        if p.sampled_temperature is not None:
            from pipeline.config.study_sampling import study_sampled

            m.sampled = study_sampled(m, p.sampled_temperature)


@dataclass
class StreamConfig:
    """How the engine stages stream items (never changes results: rows are keyed and sorted)."""

    # Requests in flight per engine replica; 0 = 2 x the model's max_num_seqs (the engine's batch
    # stays full while finished results travel back).
    max_in_flight: int = nohash(0)
    # Items a source (one model's generate items, the ensemble's problems) keeps open; 0 = 2 x max_in_flight.
    max_pending: int = nohash(0)
    flush_rows: int = nohash(256)  # checkpoint finished rows every this many rows ...
    flush_seconds: float = nohash(30.0)  # ... or this many seconds, whichever comes first

    def validate(self) -> None:
        for k in ("max_in_flight", "max_pending"):
            if getattr(self, k) < 0:
                raise ConfigError(f"stream.{k}={getattr(self, k)}: must be >= 0 (0 = automatic)")
        if self.flush_rows < 1:
            raise ConfigError(f"stream.flush_rows={self.flush_rows}: must be >= 1")
        if self.flush_seconds <= 0:
            raise ConfigError(f"stream.flush_seconds={self.flush_seconds}: must be > 0")


@dataclass
class RayConfig:
    """Where engines run."""

    address: Optional[str] = None  # null = start local Ray; "auto" or "ray://host:port" joins a cluster
    num_cpus: Optional[int] = None  # CPUs for local Ray (null = all)
    ship_code: bool = True  # ship this project to workers via runtime_env when joining a cluster
    log_to_driver: bool = False
    # At most this many engines loaded at once (null = as many as fit the cluster).  1 runs one
    # model at a time: the sequential baseline of pipeline.bench.parallel.  Never changes results.
    max_concurrent_engines: Optional[int] = None

    def validate(self) -> None:
        if self.num_cpus is not None:
            number("ray.num_cpus", self.num_cpus, 1, integer=True, hint="null = all")
        if self.max_concurrent_engines is not None:
            number(
                "ray.max_concurrent_engines", self.max_concurrent_engines, 1, integer=True, hint="null = as many as fit"
            )
        a = self.address
        if a is not None and not (a in ("auto", "local") or a.startswith("ray://") or ":" in a):
            raise ConfigError(
                f"ray.address={a!r}: not an address; use null (local Ray), auto, ray://host:port or host:port"
            )


@dataclass
class RunConfig:
    """A whole experiment: models, dataset, stages and where outputs go."""

    run_dir: str = "runs/demo"  # tables, report and manifest of this run
    store_dir: Optional[str] = None  # content-hashed artifacts; null = <run_dir>/store
    models: dict = field(default_factory=dict)  # name -> ModelConfig
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    truncate: TruncateConfig = field(default_factory=TruncateConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    stages: list = field(
        default_factory=lambda: ["generate", "truncate", "transfer", "ensemble", "score", "report"]
    )  # which stages to run, in DAG order
    error_budget: float = 0.05  # fail the run if more than this share of requests errored
    progress: bool = True  # progress bars
    force: bool = nohash(False)  # replace a run of another configuration in run_dir (else an error)
    # exact (rows independent of batching; GPU: vLLM's batch-invariant kernels) | batch_dependent |
    # auto (exact on CPU, batch_dependent on GPU); copied to every model, in provenance and the report.
    determinism: str = "auto"
    # Node type (conf/node/<name>.yaml) whose engine sizing (TP, memory) the run applies; null = none.
    node_type: Optional[str] = nohash(None)

    def validate(self) -> None:
        if not self.models:
            raise ConfigError("models is empty; add at least one model (e.g. +model@models.a=tiny_a)")
        for key, m in self.models.items():
            m.validate(key)
        names = [m.name for m in self.models.values()]
        if len(set(names)) != len(names):
            raise ConfigError(f"model short names must be unique, got {names}")
        self.dataset.validate()
        self.protocol.validate()
        self.generate.validate()
        self.truncate.validate()
        if self.truncate.filter in ("llm", "rewrite") or self.truncate.filter_model is not None:
            choose(
                "truncate.filter_model",
                self.truncate.filter_model,
                names,
                f"model (truncate.filter={self.truncate.filter} needs one of the configured models)",
            )
        self.stream.validate()
        choose("ensemble.sentence_rule", self.ensemble.sentence_rule, ("ours", "study"), "sentence rule")
        choose("ensemble.join", self.ensemble.join, ("ours", "space"), "join")
        err = plugins().metrics_error(list(self.score.metrics), dict(self.dataset.options or {}))
        if err:
            raise ConfigError(err)
        self.transfer.validate(self.truncate.variants(), names)
        self.ensemble.validate(names)
        self.score.validate()
        self.ray.validate()
        choose_each("stages", self.stages, plugins().names("stage"), "stage")
        number("error_budget", self.error_budget, 0, 1, hint="a share of requests")
        choose("determinism", self.determinism, ("auto", "exact", "batch_dependent"), "determinism")

    def model(self, name: str) -> ModelConfig:
        for m in self.models.values():
            if m.name == name:
                return m
        raise ConfigError(f"no model named {name!r}; known: {[m.name for m in self.models.values()]}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models.values()]
