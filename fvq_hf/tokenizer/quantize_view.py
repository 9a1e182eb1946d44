"""`FVQModel.quantize`: the model's quantizer as diffusers' pipelines call a `VQModel`'s `quantize` (a
`VectorQuantizer`, `diffusers/models/autoencoders/vae.py`), so that they take an FVQModel unchanged.

It is a view, not a module: it holds no weights and is not registered on the model, so saved models keep their
state-dict keys (`quantizer.*`) and load as before.
"""

from __future__ import annotations

import math

import torch

from ..quantizers import Quantizer


class QuantizeView:
    """Calls on `quantizer` under the names of diffusers' `VectorQuantizer`.

    - `view(latents)` -> `(z_q, loss, (perplexity, min_encodings, indices))`, as `VectorQuantizer.forward`: `z_q`
      the `(B, d, h, w)` quantized latents (straight-through), `loss` the codebook plus the commitment loss (each
      weighted as configured), `perplexity` and `min_encodings` None (diffusers' are None too), `indices` of the
      quantizer's `indices_shape` (`(B, h, w)` for plain VQ; aMUSEd reads `[2][2]` and reshapes it).
    - `get_codebook_entry(indices, shape)` -> `(B, d, h, w)` latents of the ids (VQ-Diffusion, aMUSEd).
    """

    def __init__(self, quantizer: Quantizer) -> None:
        self.quantizer = quantizer

    def __call__(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        out = self.quantizer(latents)
        return out.latents, out.codebook_loss + out.commitment_loss, (None, None, out.indices)

    def get_codebook_entry(self, indices: torch.LongTensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Ids -> `(B, d, h, w)` latents, as the quantizer builds them from the same ids (`lookup`).

        `shape`: `(B, h, w, C)` as diffusers passes it, the ids then in any shape with the right number of elements
        (VQ-Diffusion passes `(B, h * w)`); `C` is not read (aMUSEd passes the config's `latent_channels`, which
        here is the width before `quant_conv`, not the code width). None: the ids already have `indices_shape`.
        """
        if shape is not None:
            if len(shape) != 4:
                raise ValueError(f"shape must be (B, h, w, C), as diffusers passes it; got {tuple(shape)}.")
            ids_shape = self.quantizer.ids.batch_shape(*shape[:3])
            if indices.numel() != math.prod(ids_shape):
                # VQ-Diffusion's transformer predicts one token per position (h * w): a residual or multi-scale
                # tokenizer's images have more.
                raise ValueError(f"{indices.numel()} token ids cannot be the {self.quantizer.indices_shape} ids of "
                                 f"shape {tuple(shape)} = {ids_shape}: this {self.quantizer.display_name} quantizer "
                                 f"gives {self.quantizer.tokens_described}, so a generator of one token per "
                                 f"position needs a quantizer_type 'vq' tokenizer.")
            indices = indices.reshape(ids_shape)
        return self.quantizer.lookup(indices)
