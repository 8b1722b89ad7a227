"""Exit codes of the ``lare2`` commands, shared by every stage that has a command.

They live in ``core`` so a method package's command (``lare2 extract``, say) can return them
without importing the pipeline that dispatches it.
"""

from __future__ import annotations

__all__ = ["OK", "FAILURE", "USAGE_ERROR"]

OK = 0
"""Everything asked for was done."""

FAILURE = 1
"""Something failed while running (a notebook, the report, a command that cannot load)."""

USAGE_ERROR = 2
"""A bad command line or input: unknown command, profile, notebook or parameter (argparse's
convention)."""
