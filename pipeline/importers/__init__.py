"""Importers of the reference study's released outputs into this project's tables.

* :mod:`pipeline.importers.genex_medcalc` — MedCalc-Bench generations into our artifact schemas;
* :mod:`pipeline.importers.genex_ii` — Instruction Induction comparisons (BERTScore per item and model pair);
* :mod:`pipeline.importers.genex_ratings` — the human-ratings CSV of the user study.

Nothing heavy is imported here.
"""
