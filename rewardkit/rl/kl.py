"""KL control: the coefficient of the KL-to-reference term, fixed or adaptive, and periodic reference resets.

Adaptive coefficient (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences",
arXiv 1909.08593, section 2.2; the controller of OpenAI's lm-human-preferences, TRL's old PPO trainer and
verl's ``AdaptiveKLController``): after each step, with the measured KL to the reference, the target KL
``KL_target`` and the step's number of samples ``n``,

    e_t      = clip(KL_t / KL_target - 1, -0.2, 0.2)
    beta_t+1 = beta_t * (1 + e_t * n / horizon)

so beta grows while the policy drifts further than the target and shrinks while it stays closer; the
clip bounds one step's change, and ``horizon`` (in samples) sets how fast it adapts. Without a target
the coefficient stays what the preset says (a fixed controller).

Reference reset (ProRL, Liu et al. 2025, arXiv 2505.24864, section 3.2): every ``reset_every`` steps
the reference becomes a copy of the current policy and the optimizer's moment estimates are cleared, so
a long run's KL term anchors to a recent policy instead of holding it near the initial one.

Everything here is checkpointed (``state_dict``): the coefficient and the step of the last reset (the
reference's weights are saved by the trainer when resets are on), so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

KL_ERROR_CLIP = 0.2
"""Bound of the proportional error e_t (Ziegler et al. 2019)."""


@dataclass
class KLControl:
    """The KL coefficient of a run and when its reference was last reset; updated once per step."""

    coef: float
    """The current coefficient beta (starts at ``algo.kl_coef``)."""
    target: float | None = None
    """Target KL; None: beta stays fixed."""
    horizon: int = 10000
    """Samples over which the controller moves beta by up to a factor ~e^(0.2) (``kl_horizon``)."""
    reset_every: int = 0
    """Copy the policy into the reference every N steps (``ref_reset_every``); 0: never."""
    last_reset: int = 0
    """The step after which the reference was last reset (0: it is the initial policy)."""

    def update(self, kl: float, n_samples: int) -> float:
        """Adapt beta to this step's measured ``kl`` over ``n_samples`` samples; returns the new beta."""
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -KL_ERROR_CLIP), KL_ERROR_CLIP)
            self.coef *= 1.0 + error * n_samples / self.horizon
        return self.coef

    def reset_due(self, step: int) -> bool:
        """Whether the reference is to be reset after ``step``."""
        return self.reset_every > 0 and step % self.reset_every == 0

    def state_dict(self) -> dict[str, Any]:
        return {"coef": self.coef, "last_reset": self.last_reset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.coef = float(state["coef"])
        self.last_reset = int(state["last_reset"])


@torch.no_grad()
def reset_reference(
    reference: torch.nn.Module, policy: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """ProRL's hard reset: ``reference`` takes ``policy``'s weights (in place, still frozen) and
    ``optimizer`` forgets its moment estimates (its hyper-parameters and schedule stay)."""
    reference.load_state_dict(policy.state_dict())
    optimizer.state.clear()
