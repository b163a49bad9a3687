"""What reaches the terminal from the libraries underneath: quiet by default, everything with ``--verbose``.

transformers draws a "Writing model shards" bar at every checkpoint save and a "Loading weights" bar at
every load; vLLM logs some forty INFO lines (a 4 KB config dump among them) when its engine starts and
more at every weight sync. Interleaved with the training progress they bury it, so by default
``quiet_third_party`` turns progress bars of transformers, huggingface_hub and datasets off, keeps the
loggers of transformers, vLLM, torch.distributed and Ray at WARNING, and hides the deprecation warnings
those libraries raise about their own internals. Download bars stay: a first download of a model is
slow, and its bar is how a user sees it move. ``rewardkit ... --verbose`` (``verbose: true`` in a train
config) leaves all of it on.

Environment variables a user sets (``VLLM_LOGGING_LEVEL``, ``HF_HUB_DISABLE_PROGRESS_BARS``,
``HF_DATASETS_DISABLE_PROGRESS_BARS``) win over these defaults. vLLM reads its level when it is imported,
so call this before building a vLLM back end; the CLI and ``rewardkit.train`` do.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from typing import Any

THIRD_PARTY_LOGGERS = ("transformers", "vllm", "torch.distributed", "ray", "datasets", "huggingface_hub")
"""Loggers kept at WARNING unless verbose."""

QUIET_ENV = {"VLLM_LOGGING_LEVEL": "WARNING", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
"""Read by vLLM and datasets when they are imported: set (unless the user set them) when quiet."""

VERBOSE_ENV = {"TRANSFORMERS_VERBOSITY": "info"}
"""Read by transformers when it sets its loggers up (it resets their level then): set when verbose."""

DOWNLOAD_BARS = ("huggingface_hub.http_get", "huggingface_hub.xet_get", "huggingface_hub.snapshot_download")
"""huggingface_hub's progress-bar groups that stay on when quiet: downloads."""

NOISY_PACKAGES = r"(vllm|transformers|torch|datasets|huggingface_hub)(\.|$)"
"""Packages whose FutureWarning/DeprecationWarning about their own internals are hidden when quiet."""


def quiet_third_party(verbose: bool = False) -> None:
    """Third-party progress bars and INFO logs off (``verbose=False``) or back to the libraries' defaults."""
    _set_env(verbose)
    _set_progress_bars(verbose)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    ours = [
        f for f in warnings.filters if f[0] == "ignore" and getattr(f[3], "pattern", None) == NOISY_PACKAGES
    ]
    for item in ours:  # drop our filters first, so that calling this again does not stack them
        warnings.filters.remove(item)
    if not verbose:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=NOISY_PACKAGES)


def _set_env(verbose: bool) -> None:
    wanted, unwanted = (VERBOSE_ENV, QUIET_ENV) if verbose else (QUIET_ENV, VERBOSE_ENV)
    for key, value in unwanted.items():
        if os.environ.get(key) == value:  # ours (or the same as ours): give the library its default back
            del os.environ[key]
    for key, value in wanted.items():
        os.environ.setdefault(key, value)


def _set_progress_bars(verbose: bool) -> None:
    """transformers reads huggingface_hub's global switch when it is imported, and keeps its own copy after."""
    try:
        from huggingface_hub import utils as hub
    except ImportError:  # the scoring-only install: no transformers, no bars
        return
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") is not None:
        return  # the user's choice; huggingface_hub refuses (with a warning) to override it
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        # these flip huggingface_hub's global switch too
        (hf_logging.enable_progress_bar if verbose else hf_logging.disable_progress_bar)()
    else:
        (hub.enable_progress_bars if verbose else hub.disable_progress_bars)()
    if not verbose:
        for group in DOWNLOAD_BARS:
            hub.enable_progress_bars(group)
    if "datasets" in sys.modules:
        import datasets

        (datasets.enable_progress_bars if verbose else datasets.disable_progress_bars)()


class DropRepeatedWarnings(logging.Filter):
    """A handler filter that lets each distinct warning (logger and message) through once.

    vLLM warns "RotaryEmbedding: Failed to load weights" at every in-place weight sync (the rotary
    cache is computed, not loaded: harmless) and, on CPU, "doesn't allow to use torch.set_num_threads"
    five times as its engine starts; once is enough to be informed."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def optional_pyplot(artifact: str) -> Any | None:
    """``matplotlib.pyplot`` on the file-only Agg back end, or None when matplotlib is not installed: a
    plot is an extra, so its absence is a warning (once per artifact) and never fails the run."""
    try:
        import matplotlib
    except ImportError:
        _warn_once(f"matplotlib is not installed, so no {artifact} is drawn (pip install matplotlib)")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@functools.cache
def _warn_once(message: str) -> None:
    logging.getLogger("rewardkit").warning(message)
