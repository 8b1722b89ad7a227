"""Foundations every stage uses: repository paths, run profiles, per-image random streams, the
machine's environment report, and deterministic figure/metrics writing.
"""
