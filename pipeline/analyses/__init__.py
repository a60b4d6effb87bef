"""The study's further analyses of released or live MedCalc outputs (``crosscot analyses``)."""
