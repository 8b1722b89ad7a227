"""Batch entry points: the notebook runner (papermill), the HTML report, the ``lare2`` command.
"""
