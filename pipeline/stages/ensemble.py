"""Stage `ensemble`: placeholder replaced by the sentence-level ensemble implementation."""

from __future__ import annotations


class EnsembleStage:
    name = "ensemble"
    requires: tuple[str, ...] = ()
    version = "0"

    def run(self, ctx):
        raise NotImplementedError("ensemble stage is not implemented yet")
