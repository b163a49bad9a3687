"""A KV cache for the hf back end's sampling loop that grows in place instead of by concatenation.

transformers' ``DynamicCache`` appends each step's keys and values with ``torch.cat``, which copies the
whole cache of every layer once per generated token: quadratic in the completion length, and on CPU
the largest single cost of decoding a small model after the matrix products (about a third of the
kernel time of the benchmark's 64-row, 40-token rollouts; ~5 % of their wall time). Here each layer
reserves room for the prompt and the token budget once and writes every new step into it; attention
reads a view of the filled part. Dropping finished rows (``reorder_cache``) selects rows of the buffer.

Built on transformers' per-layer cache API (``DynamicLayer``; not in older releases); ``reserved_cache``
returns None where that API is missing, and the loop then lets the model build its own cache.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # transformers without per-layer caches: the model's own cache is used
    DynamicCache = DynamicLayer = None  # type: ignore[assignment,misc]

__all__ = ["reserved_cache"]


def reserved_cache(capacity: int) -> Any | None:
    """A ``DynamicCache`` whose layers hold ``capacity`` positions before they must grow (they still
    can: past it they reallocate, doubling), or None where transformers lacks the layer API."""
    if DynamicLayer is None:
        return None
    layer = type("ReservedLayer", (_ReservedLayer,), {"capacity": capacity})
    cache = DynamicCache()
    cache.layer_class_to_replicate = layer
    return cache


if DynamicLayer is not None:

    class _ReservedLayer(DynamicLayer):  # type: ignore[misc,valid-type]
        """``keys``/``values`` are views ``[B, H, n, D]`` of buffers ``[B, H, capacity, D]``."""

        capacity = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            super().lazy_initialization(key_states, value_states)
            self._kbuf: torch.Tensor | None = None
            self._vbuf: torch.Tensor | None = None

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, q = self.get_seq_length(), key_states.shape[-2]
            if self._kbuf is None or n + q > self._kbuf.shape[-2]:
                self._grow(key_states, value_states, max(n + q, self.capacity, 2 * n))
            assert self._kbuf is not None and self._vbuf is not None
            self._kbuf[:, :, n : n + q] = key_states
            self._vbuf[:, :, n : n + q] = value_states
            self.keys, self.values = self._kbuf[:, :, : n + q], self._vbuf[:, :, : n + q]
            return self.keys, self.values

        def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, size: int) -> None:
            n = self.get_seq_length()
            kbuf = key_states.new_empty(*key_states.shape[:2], size, key_states.shape[-1])
            vbuf = value_states.new_empty(*value_states.shape[:2], size, value_states.shape[-1])
            if n:
                kbuf[:, :, :n] = self.keys
                vbuf[:, :, :n] = self.values
            self._kbuf, self._vbuf = kbuf, vbuf

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            """Keep (or repeat) rows ``beam_idx`` of the batch, in that order."""
            n = self.get_seq_length()
            if n == 0 or self._kbuf is None:
                return
            index = beam_idx.to(self._kbuf.device)
            self._kbuf, self._vbuf = self._kbuf.index_select(0, index), self._vbuf.index_select(0, index)
            self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.reorder_cache(indices)  # type: ignore[arg-type]

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            self._kbuf = self._vbuf = None  # the views left are plain tensors now; the next update regrows

        def batch_repeat_interleave(self, repeats: int) -> None:
            super().batch_repeat_interleave(repeats)
            self._kbuf = self._vbuf = None
