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


class ConfigError(ValueError):
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
        if self.temperature < 0:
            raise ConfigError(f"{where}.temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not (0 < self.top_p <= 1):
            raise ConfigError(f"{where}.top_p={self.top_p}: must be in (0, 1]; use 1.0 to disable")
        if self.top_k < -1:
            raise ConfigError(f"{where}.top_k={self.top_k}: must be -1/0 (off) or a positive int")


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
    # Provisioning: how `crosscot models prepare` builds `path` when absent.
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
    enforce_eager: bool = nohash(True)  # skip graph capture (fast start on CPU / tests)
    enable_prefix_caching: bool = nohash(True)  # reuse shared prompt prefixes
    # KV-cache block size (tokens); null = the engine's default (16 on GPU, 128 on CPU). The prefix
    # cache reuses whole blocks only, so cached ensemble scoring re-prefills the context's partial
    # last block per candidate: smaller blocks prefill fewer tokens (CPU prefers multiples of 32).
    block_size: Optional[int] = nohash(None)

    def validate(self, key: str = "") -> None:
        where = f"models.{key or self.name}"
        if not self.name or self.name is MISSING:
            raise ConfigError(f"{where}.name is empty: give the model a short name")
        if any(c in self.name for c in "+/ ,"):
            raise ConfigError(
                f"{where}.name={self.name!r}: short names may not contain '+', '/', ',' or spaces "
                "(they are used in setting labels like 'Ensemble A+B/C')"
            )
        from pipeline.engine.formats import FORMATS

        if self.thinking_format not in FORMATS:
            raise ConfigError(
                f"{where}.thinking_format={self.thinking_format!r} is unknown; "
                f"choose one of {FORMATS.names()}"
            )
        if self.dtype not in ("auto", "bfloat16", "float16", "float32", "half", "float"):
            raise ConfigError(f"{where}.dtype={self.dtype!r}: use auto, bfloat16, float16 or float32")
        if self.max_model_len < 64:
            raise ConfigError(f"{where}.max_model_len={self.max_model_len}: too small (>= 64)")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"{where}.tensor_parallel_size must be >= 1")
        self.greedy.validate(f"{where}.greedy")
        self.sampled.validate(f"{where}.sampled")
        if self.greedy.temperature != 0:
            raise ConfigError(
                f"{where}.greedy.temperature={self.greedy.temperature}: Default CoT is greedy; set 0"
            )


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
        from pipeline.datasets import DATASETS

        if self.name not in DATASETS:
            raise ConfigError(
                f"dataset.name={self.name!r} is unknown; choose one of {DATASETS.names()}"
            )
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"dataset.limit={self.limit}: must be positive or null")


@dataclass
class GenerateConfig:
    """Stage `generate`: produce each model's own CoT and answer."""

    methods: list = field(default_factory=lambda: ["empty", "default", "sampled"])
    num_samples: int = 1  # k samples per problem for Sampled CoT
    thought_budget: int = 256  # max CoT tokens before we close the thinking ourselves
    answer_budget: int = 64  # max answer tokens after the CoT
    chunk_size: int = nohash(64)  # problems per checkpointed shard (resume granularity)

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in ("empty", "default", "sampled")]
        if bad:
            raise ConfigError(
                f"generate.methods has {bad}: allowed are empty, default, sampled "
                "(transfer and ensemble are their own stages)"
            )
        if self.num_samples < 1 or self.thought_budget < 1 or self.answer_budget < 1:
            raise ConfigError("generate.num_samples, thought_budget and answer_budget must be >= 1")


@dataclass
class TruncateConfig:
    """Stage `truncate`: make the "without answer" and partial variants of CoTs."""

    filter: str = "rule"  # "rule" (sentence filter) or "llm" (a pool model rewrites; rule fallback)
    filter_model: Optional[str] = None  # model name (from `models`) used when filter=llm
    prefix_fractions: list = field(default_factory=list)  # e.g. [0.25, 0.5]: keep first share of sentences

    def validate(self) -> None:
        if self.filter not in ("rule", "llm"):
            raise ConfigError(f"truncate.filter={self.filter!r}: use 'rule' or 'llm'")
        for f in self.prefix_fractions:
            if not (0 < float(f) < 1):
                raise ConfigError(f"truncate.prefix_fractions has {f}: each must be in (0, 1)")


@dataclass
class TransferConfig:
    """Stage `transfer`: every source CoT variant x every target model."""

    variants: list = field(default_factory=lambda: ["full", "without_answer"])
    sources: Optional[list] = None  # source model names; null = all models
    targets: Optional[list] = None  # target model names; null = all models
    answer_budget: int = 64  # max answer tokens after the transferred CoT
    chunk_size: int = nohash(64)


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


@dataclass
class ScoreConfig:
    """Stage `score`: extraction, correctness, consistency and accuracy tables."""

    metrics: list = field(default_factory=lambda: ["paper", "strict"])
    judge: str = "ours"  # "ours" or "stored" (imported judgments)
    n_boot: int = 1000  # bootstrap resamples for 95% intervals
    seed: int = 0


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
    ray: RayConfig = field(default_factory=RayConfig)
    stages: list = field(
        default_factory=lambda: ["generate", "truncate", "transfer", "ensemble", "score", "report"]
    )  # which stages to run, in DAG order
    error_budget: float = 0.05  # fail the run if more than this share of requests errored
    progress: bool = True  # progress bars

    def validate(self) -> None:
        if not self.models:
            raise ConfigError("models is empty: add at least one model (e.g. +model@models.a=tiny_a)")
        for key, m in self.models.items():
            m.validate(key)
        names = [m.name for m in self.models.values()]
        if len(set(names)) != len(names):
            raise ConfigError(f"model short names must be unique, got {names}")
        self.dataset.validate()
        self.generate.validate()
        self.truncate.validate()
        for lst, what in ((self.transfer.sources, "transfer.sources"), (self.transfer.targets, "transfer.targets"),
                          (self.ensemble.generators, "ensemble.generators"), (self.ensemble.evaluators, "ensemble.evaluators")):
            for n in lst or []:
                if n not in names:
                    raise ConfigError(f"{what} names {n!r}, which is not a configured model; known: {names}")
        if self.truncate.filter == "llm" and self.truncate.filter_model not in names:
            raise ConfigError(
                f"truncate.filter=llm needs truncate.filter_model set to one of {names}, "
                f"got {self.truncate.filter_model!r}"
            )
        if self.ensemble.enabled and (not self.ensemble.generators or not self.ensemble.evaluators):
            raise ConfigError("ensemble.enabled=true needs ensemble.generators and ensemble.evaluators")
        if self.ensemble.scoring not in ("mean_nll", "paper"):
            raise ConfigError(f"ensemble.scoring={self.ensemble.scoring!r}: use mean_nll or paper")
        from pipeline.stages import STAGES

        for s in self.stages:
            if s not in STAGES:
                raise ConfigError(f"stages has {s!r}; known stages: {STAGES.names()}")
        if not (0 <= self.error_budget <= 1):
            raise ConfigError(f"error_budget={self.error_budget}: must be a share in [0, 1]")

    def model(self, name: str) -> ModelConfig:
        for m in self.models.values():
            if m.name == name:
                return m
        raise ConfigError(f"no model named {name!r}; known: {[m.name for m in self.models.values()]}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models.values()]
