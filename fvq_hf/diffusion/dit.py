"""`TimeMappedDiTTransformer2DModel`: diffusers' `DiTTransformer2DModel` with the timestep embedding of the original
DiT / SiT code, and an affine map of the timestep before it (a flow model trained on another time axis).

diffusers embeds the timestep with `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)`, the frequencies
`10000^(-i / (128 - 1))`; facebookresearch DiT and SiT (`TimestepEmbedder.timestep_embedding`, from GLIDE) use
`10000^(-i / 128)`. The difference is far beyond rounding (the embedding of t = 999 moves by O(1)), so a converted
DiT / SiT needs `timestep_freq_shift=0`. Three config keys, read by every block's `time_proj`:

| key | meaning | diffusers' own DiT | a converted DiT | a converted SiT |
| --- | --- | --- | --- | --- |
| `timestep_freq_shift` | `downscale_freq_shift` of the sinusoid: frequencies `10000^(-i / (128 - shift))` | 1 | 0 | 0 |
| `timestep_scale`, `timestep_offset` | the model embeds `offset + scale * timestep` | 1, 0 | 1, 0 | -1/1000, 1 |

A SiT (linear path, velocity) is trained at time t in [0, 1] with t = 0 noise and t = 1 data; diffusers' flow-matching
schedulers call the model at `timestep = 1000 * sigma` with `x_t = (1 - sigma) x0 + sigma noise` and want
`noise - x0`: so t = 1 - timestep / 1000, and the output's sign flips (folded into `proj_out_2` at conversion).

With the defaults (1, 1, 0) the model is diffusers' `DiTTransformer2DModel` exactly; its folders load here, and
`DiTPipeline` takes this model as its `transformer`. A pipeline folder that holds it records the library `fvq_hf`:
loading one through `DiTPipeline.from_pretrained` needs the class among the package root's names.
"""

from __future__ import annotations

import torch
from diffusers import DiTTransformer2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import Timesteps
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers looks ModelMixin up on this module)


class MappedTimesteps(Timesteps):
    """diffusers' `Timesteps` (cos first, 256 channels) at `offset + scale * timestep`: `(B,)` -> `(B, 256)`."""

    def __init__(self, num_channels: int, downscale_freq_shift: float, scale: float = 1.0, offset: float = 0.0):
        super().__init__(num_channels, flip_sin_to_cos=True, downscale_freq_shift=downscale_freq_shift)
        self.time_scale, self.time_offset = scale, offset

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        if self.time_scale != 1 or self.time_offset != 0:
            timesteps = timesteps.float() * self.time_scale + self.time_offset
        return super().forward(timesteps)


class TimeMappedDiTTransformer2DModel(DiTTransformer2DModel):
    """A `DiTTransformer2DModel` (same weights, same `forward`: `(B, C, H, W)` latents, `(B,)` timesteps, `(B,)` class
    labels -> `Transformer2DModelOutput.sample` `(B, out_channels, H, W)`) whose blocks embed
    `timestep_offset + timestep_scale * timestep` with sinusoid frequencies `10000^(-i / (128 - timestep_freq_shift))`.
    """

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 72,
        in_channels: int = 4,
        out_channels: int | None = None,
        num_layers: int = 28,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        attention_bias: bool = True,
        sample_size: int = 32,
        patch_size: int = 2,
        activation_fn: str = "gelu-approximate",
        num_embeds_ada_norm: int | None = 1000,
        upcast_attention: bool = False,
        norm_type: str = "ada_norm_zero",
        norm_elementwise_affine: bool = False,
        norm_eps: float = 1e-5,
        timestep_freq_shift: float = 1.0,
        timestep_scale: float = 1.0,
        timestep_offset: float = 0.0,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim, in_channels=in_channels,
            out_channels=out_channels, num_layers=num_layers, dropout=dropout, norm_num_groups=norm_num_groups,
            attention_bias=attention_bias, sample_size=sample_size, patch_size=patch_size, activation_fn=activation_fn,
            num_embeds_ada_norm=num_embeds_ada_norm, upcast_attention=upcast_attention, norm_type=norm_type,
            norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps)
        for block in self.transformer_blocks:
            embedding = block.norm1.emb
            embedding.time_proj = MappedTimesteps(embedding.time_proj.num_channels, timestep_freq_shift,
                                                  timestep_scale, timestep_offset)
