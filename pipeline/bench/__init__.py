"""Benchmarks, one module each, run by ``crosscot bench <name>|all`` (:mod:`.runner` lists them)."""
