"""Scoring library: judge answers, measure cross-model consistency, bootstrap CIs, write tables.

Modules: ``judge`` (correctness), ``consistency`` (agreement metrics by name),
``bootstrap`` (vectorized CIs over problems), ``tables`` (CSV/Arrow outputs),
``preference`` (human-preference analysis).  Nothing heavy is imported here.
"""
