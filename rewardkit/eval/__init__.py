"""Evaluation of checkpoints on suites of environments: suites, runs, reports, and the ``eval`` command.

Importing this package imports neither torch nor transformers.
"""

from rewardkit.eval.config import EvalConfig
from rewardkit.eval.run import EvalMismatchError, evaluate
from rewardkit.eval.suite import Suite, load_suite

__all__ = ["EvalConfig", "EvalMismatchError", "Suite", "evaluate", "load_suite"]
