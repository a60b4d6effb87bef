"""Stage registry: each stage is a small class implementing :class:`pipeline.stages.protocol.Stage`.

Stages are registered lazily by import path so that listing or validating
them never imports engines.
"""

from __future__ import annotations

from pipeline.registry import Registry
from pipeline.stages.protocol import Stage

STAGES: Registry[type[Stage]] = Registry("stage")
STAGES.register("generate", "pipeline.stages.generate:GenerateStage")
STAGES.register("truncate", "pipeline.stages.truncate:TruncateStage")
STAGES.register("transfer", "pipeline.stages.transfer:TransferStage")
STAGES.register("ensemble", "pipeline.stages.ensemble:EnsembleStage")
STAGES.register("score", "pipeline.stages.score:ScoreStage")
STAGES.register("report", "pipeline.stages.report:ReportStage")
