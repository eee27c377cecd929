"""Benchmarks for adtrans against handwritten NumPy and the peers.

Run them with ``python benchmarks/run.py``; see ``benchmarks/README.md``.
"""
