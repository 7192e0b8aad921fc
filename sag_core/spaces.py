"""The two output spaces of the webui's denoisers, each with its x0 estimate and re-noising rule.

k-diffusion samplers (Euler, DPM++ ...) see `x = x0 + sigma * eps` and predict x0.
Timestep samplers (DDIM, PLMS, UniPC) see `x_t = sqrt(a) * x0 + sqrt(1 - a) * eps` at timestep t
with `a = alphas_cumprod[t]`, and predict eps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _per_row(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1)


@dataclass(frozen=True)
class X0Space:
    """Outputs are x0 predictions (k-diffusion's CompVisDenoiser and CompVisVDenoiser)."""

    def to_x0(self, x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return out

    def renoise(self, x0: torch.Tensor, x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 with the same noise the model found in x: x0 + (x - x0_pred), computed as x + (x0 - x0_pred).

        The same value; written so, an x0 equal to the prediction (nothing blurred) gives back x exactly.
        """
        return x + (x0 - out)

    def target(self, x0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """What a perfect model returns for the re-noised degraded input: the degraded x0 itself."""
        return x0


@dataclass(frozen=True)
class EpsSpace:
    """Outputs are eps predictions at integer timesteps (the webui's CFGDenoiserTimesteps)."""

    alphas_cumprod: torch.Tensor

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        table = self.alphas_cumprod.to(t.device)
        return _per_row(table[t.to(torch.long)])

    def to_x0(self, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alpha(t).to(x.dtype)
        return (x - (1 - a).sqrt() * out) / a.sqrt()

    def renoise(self, x0: torch.Tensor, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 noised to timestep t with the predicted eps: sqrt(a) x0 + sqrt(1 - a) eps.

        Computed as x + sqrt(a) (x0 - x0_pred), the same value since x = sqrt(a) x0_pred + sqrt(1 - a) eps,
        so that an x0 equal to the prediction (nothing blurred) gives back x exactly.
        """
        a = self.alpha(t).to(x0.dtype)
        return x + a.sqrt() * (x0 - self.to_x0(x, out, t))

    def target(self, x0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """What a perfect model returns for the re-noised degraded input: the eps used to noise it."""
        return out
