"""Importers of the reference study's released outputs into our artifact schemas (today: MedCalc-Bench,
:mod:`.genex_medcalc`)."""
