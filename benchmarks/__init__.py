"""Benchmarks of the job engine (``python benchmarks/engine.py``)."""
