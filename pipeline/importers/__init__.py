"""Importers of the reference study's released outputs into this project's tables.

* :mod:`pipeline.importers.genex_ii` — Instruction Induction comparisons (BERTScore per item and model pair);
* :mod:`pipeline.importers.genex_ratings` — the human-ratings CSV of the user study.

The MedCalc-Bench generations importer is :mod:`pipeline.genex` (to become
``pipeline.importers.genex_medcalc``).  Nothing heavy is imported here.
"""
