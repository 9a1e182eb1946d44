"""An example quantizer type without a table: FSQ-style scalar quantization (Mentzer et al. 2023, arXiv
2309.15505). Each of the d latent channels is bounded by tanh and rounded to one of `levels` evenly spaced values
in [-1, 1], so the K = levels^d codes are implicit: nothing is learnt, no bridge applies, and the code id is the
channels' level digits read as one base-`levels` number (channel 0 the lowest digit). One module; registered as
"scalar". (It shows the protocol only: real FSQ uses a different number of levels per channel.)"""

from __future__ import annotations

import torch

from fvq_hf.quantizers import Quantizer, QuantizerOutput


class ScalarQuantizer(Quantizer):
    """`(B, d, h, w)` latents -> ids `(B, h, w)` in `[0, levels^d)`; `codebook_size` must be `levels ** code_dim`."""

    name = "scalar"
    display_name = "scalar (FSQ-style)"

    def __init__(self, codebook_size: int, code_dim: int, *, levels: int = 2) -> None:
        super().__init__(codebook_size, code_dim, {"levels": levels})
        if codebook_size != levels**code_dim:
            raise ValueError(f"The scalar quantizer has levels ** d = {levels}^{code_dim} = {levels**code_dim} "
                             f"implicit codes; set num_vq_embeddings to that, not {codebook_size}.")
        self.levels = levels

    @classmethod
    def validate_config(cls, config: dict) -> None:
        if isinstance(config["levels"], bool) or not isinstance(config["levels"], int) or config["levels"] < 2:
            raise ValueError(f"levels must be an integer >= 2, got {config['levels']!r}.")

    def place(self, device: torch.device) -> torch.Tensor:
        """What one level step of each channel adds to the id: `levels ** channel`, as a `(1, d, 1, 1)` map."""
        return self.levels ** torch.arange(self.code_dim, device=device).view(1, -1, 1, 1)

    def level_values(self, steps: torch.Tensor) -> torch.Tensor:
        """Level steps in `[0, levels)` -> their values in [-1, 1]."""
        return steps * (2 / (self.levels - 1)) - 1

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        self.check_latents(latents)
        bounded = torch.tanh(latents.float())
        steps = torch.round((bounded + 1) * ((self.levels - 1) / 2))
        quantized = bounded + (self.level_values(steps) - bounded).detach()  # straight-through estimator
        ids = (steps.long() * self.place(latents.device)).sum(dim=1)
        zero = latents.new_zeros((), dtype=torch.float32)  # nothing to learn: no codebook or commitment loss
        return QuantizerOutput(quantized.to(latents.dtype), ids, zero, zero)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        self.check_indices(indices, True)
        steps = indices.long()[:, None] // self.place(indices.device) % self.levels
        return self.level_values(steps.float())
