"""Mendwell benchmarks: ``make bench`` or ``python -m bench [name ...]``.

Never part of ``make test``.
"""
