"""FVQModel: encoder -> (bridged) vector quantizer -> decoder, as a diffusers model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ..bridges import BRIDGES, NO_BRIDGE, codebook_grid, resolve_bridge_config
from ..conversion.original_info import OriginalCheckpointInfo
from ..data.table_file import check_table_fits, load_table
from ..hub.evaluation_file import load_evaluation
from ..hub.mixin import StrictHubMixin
from ..hub.model_card import tokenizer_card
from ..quantizers import quantizer_class
from ..quantizers.base import QUANTIZER_PRECISIONS
from .autoencoder import Decoder, Encoder
from .quantize_view import QuantizeView

# fvq-hf 0.1 saved every bridge's keys flat in the model config; they map to `bridge_config` keys.
LEGACY_BRIDGE_KEYS = {"bridge_patch_size": "patch_size", "bridge_hidden_size": "hidden_size",
                      "bridge_depth": "depth", "bridge_num_heads": "num_heads", "bridge_mlp_ratio": "mlp_ratio"}


def migrate_config(config):
    """A model config with flat legacy bridge keys -> the same config with `bridge_config` (others unchanged)."""
    if config is None or not any(k in config for k in LEGACY_BRIDGE_KEYS):
        return config
    config = dict(config)
    legacy = {new: config.pop(old) for old, new in LEGACY_BRIDGE_KEYS.items() if old in config}
    bridge_type = config.get("bridge_type", "vqbridge")
    if "bridge_config" not in config and bridge_type != NO_BRIDGE and bridge_type in BRIDGES:
        accepted = BRIDGES[bridge_type].config_defaults()
        config["bridge_config"] = {k: v for k, v in legacy.items() if k in accepted}
    return config


@dataclass
class FVQEncoderOutput(BaseOutput):
    """
    Args:
        latents (`torch.Tensor` of shape `(B, vq_embed_dim, h, w)`): the latents before quantization (after
            `quant_conv`), as diffusers' `VQEncoderOutput.latents`: `decode` quantizes them.
        quantized (`torch.Tensor` of shape `(B, vq_embed_dim, h, w)`): those latents quantized (the codes of
            `indices`, with straight-through gradients to `latents`), for `decode(quantized, force_not_quantize=True)`.
        indices (`torch.LongTensor` of the quantizer's `indices_shape`, `(B, h, w)` for plain VQ): the token ids
            of `quantized`.
    """

    latents: torch.Tensor
    quantized: torch.Tensor = None
    indices: torch.LongTensor = None


@dataclass
class FVQDecoderOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor` of shape `(B, out_channels, H, W)`): decoded images in [-1, 1] (not clamped).
    """

    sample: torch.Tensor


@dataclass
class FVQModelOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor` of shape `(B, out_channels, H, W)`): the reconstruction.
        indices (`torch.LongTensor` of the quantizer's `indices_shape`): the token ids used.
        codebook_loss (`torch.Tensor`, scalar): weighted codebook loss.
        commitment_loss (`torch.Tensor`, scalar): weighted commitment loss.
    """

    sample: torch.Tensor
    # Defaults as diffusers' outputs have them: accelerate's mixed precision rebuilds an output from a dict of its
    # fields (`type(output)({...})`), which BaseOutput reads into the fields only when the others default to None.
    indices: torch.LongTensor = None
    codebook_loss: torch.Tensor = None
    commitment_loss: torch.Tensor = None


class FVQModel(StrictHubMixin, ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""A VQ image tokenizer of LlamaGen's VQ family whose codebook can be trained through a VQBridge (FVQ).

    Images are `(B, in_channels, H, W)` in [-1, 1] with H and W divisible by `downsample_factor`
    (= 2 ** (len(block_out_channels) - 1)); token ids lie in `[0, num_vq_embeddings)` and have the quantizer's
    shape (`model.quantizer.indices_shape`): `(B, H/f, W/f)` for plain VQ; each type in `fvq_hf.quantizers`
    describes its own.

    It takes the place of diffusers' `VQModel` in diffusers' pipelines (LDM, DiT, VQ-Diffusion, Kandinsky 2.2,
    aMUSEd), with its meaning: `encode(x).latents` are the latents before quantization, `decode(h)` quantizes them
    with the (bridged) codebook unless `force_not_quantize=True`, `quantize` is the quantizer as diffusers calls
    its `VectorQuantizer`, and the config has `scaling_factor`, `force_upcast` and `lookup_from_codebook`. This
    package's own names stay: `tokenize` / `detokenize` (images <-> ids), `encode(x).quantized` and `.indices`.
    Like `VQModel` it is an `AutoencoderMixin`: `enable_slicing()` makes `encode`, `decode`, `tokenize` and
    `detokenize` run one image at a time (memory bounded by one image; the same outputs), and `enable_tiling()`
    refuses, as `VQModel`'s does (see `enable_tiling`).

    Parameters:
        in_channels, out_channels: image channels.
        sample_size: the resolution the model was trained at (images of other multiples of f also work).
        block_out_channels: width of each encoder/decoder level; LlamaGen VQ-16 is (128, 128, 256, 256, 512).
        layers_per_block: residual blocks per encoder level (the decoder has one more).
        latent_channels: encoder output channels before `quant_conv`.
        norm_num_groups: GroupNorm groups.
        dropout: dropout inside residual blocks.
        num_vq_embeddings: codebook size K.
        vq_embed_dim: code dimension d.
        bridge_type: a name in `fvq_hf.bridges.BRIDGES`: "vqbridge" (FVQ, the release's ViT bridge), "dit" (the
            authors' DiT QBridge, which their shipped scripts train), "linear" (SimVQ), "lc-linear" / "lc-mlp"
            (VQGAN-LC's projectors from a table of width `table_dim`), "mlp" (the FVQ paper's lin/5 baseline); or
            "none" (plain VQ).
        bridge_config: that bridge's own keys (missing ones take its defaults), e.g. for the VQBridge
            `{"patch_size": 4, "hidden_size": 256, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}`. Configs saved
            with the flat `bridge_patch_size`-style keys of fvq-hf 0.1 still load (see `from_config`).
        codebook_l2_norm: l2-normalise latents and codes before the search (LlamaGen's default with d = 8; not
            with a VQBridge, whose all-zero initial codebook has no direction to normalise).
        quantizer_type: a name in `fvq_hf.quantizers.QUANTIZERS`: "vq" (one code per position), "residual" (D codes
            per position from the one codebook) or "multiscale" (VAR: a token map per scale, coarse to fine). Every
            bridge type works with each; a registered type without a table (`has_table` False) takes "none".
        quantizer_config: that type's keys (missing ones take its defaults), e.g. `{"depth": 4}` for "residual",
            `{"scales": [...], "num_phi": 4, "phi_ratio": 0.5}` for "multiscale" (whose last scale must be the
            latent grid, sample_size / f); none for "vq".
        quant_conv_kernel_size: kernel of `quant_conv` / `post_quant_conv`: 1 (LlamaGen, FVQ), 3 (VAR).
        codebook_weight, commitment_weight: weights of the two quantizer losses (1.0 and 0.25 as released).
        table_init: how the learnable table starts: "auto" (the bridge's rule, else uniform(-1/K, 1/K) as
            LlamaGen and FVQ), "uniform", or "normal" (N(0, 1), `nn.Embedding`'s default, as the FVQ authors' VAR
            variant). Only at initialisation: loaded weights replace it.
        quantizer_precision: where the bridge and the nearest-code search run when the model is trained or run under
            autocast (mixed precision): "fp32" (autocast off in the quantizer: the exact nearest code) or "autocast"
            (under the caller's autocast, as the FVQ authors' plain and residual models run in their bf16 loop;
            see `fvq_hf.quantizers.TableQuantizer`). Without autocast both are fp32.
        table_dim: the width D of the learnable table (None: `vq_embed_dim`, the table is as wide as the codes). A
            different width needs a bridge that maps it ("lc-linear", "lc-mlp": VQGAN-LC's 768-d CLIP table).
        freeze_table: keep the table as initialised (or loaded: `load_table`) and train only the bridge; None: as
            the bridge says (frozen under SimVQ's and VQGAN-LC's projectors, trained otherwise). VQGAN-LC's
            `tuning_codebook` modes: -1 a random trainable table, -2 a random frozen one, 0 a loaded frozen one (their
            released runs), 1 a loaded trainable one.
        table_update, table_ema_decay: "gradient" (the default: the losses train the table, through the bridge) or
            "ema": plain VQ whose table is the moving average of the vectors each code quantizes, decay
            `table_ema_decay` (VQGAN-LC's VQGAN-EMA baseline, 0.99), summed over processes
            (`fvq_hf.quantizers.ema_table`); no bridge, not multi-scale.
        search_chunk_size: block size of the torch nearest-code search (GPU, or a CPU without the kernel):
            memory O(chunk^2), not O(N K). The CPU kernel picks its own cache-sized tiles (`fvq_hf.search`).
        scaling_factor: what diffusers' latent pipelines (LDMPipeline, DiTPipeline, Kandinsky img2img) multiply the
            latents by before diffusion and divide them by before `decode`, as `VQModel`'s key (0.18215 there);
            1.0: the latents as `encode` gives them.
        force_upcast: whether diffusers' pipelines that read it (aMUSEd) move an fp16 model to fp32 around `decode`,
            as `VQModel`'s key. False, as `VQModel`'s default and as fvq-hf has always run: the quantizer is kept in
            fp32 anyway (`_keep_in_fp32_modules`), and True would change how an fp16 model decodes in them.
        lookup_from_codebook: `decode(h, force_not_quantize=True, shape=...)` takes token ids `h` (aMUSEd), as
            `VQModel`'s key; False: it takes quantized latents.
        attention_levels: the encoder levels (0: full resolution) whose residual blocks are each followed by
            self-attention, in the decoder at the same resolutions; the middle blocks always have it. None: the
            lowest level (LlamaGen; taming's f16 config, `attn_resolutions: [16]` at 256 px). `[]`: the middle
            blocks only, as taming's f8 config (its 16 px attention resolution is never reached), which VQGAN-LC's
            f8 model uses.
    """

    _supports_gradient_checkpointing = True
    # Distances to a large codebook need fp32, also when the rest of the model runs in fp16/bf16 (the measurement is
    # in `TableQuantizer`'s docstring); under autocast, `quantizer_precision="autocast"` computes in bf16 from these
    # fp32 weights.
    _keep_in_fp32_modules = ["quantizer"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        sample_size: int = 256,
        block_out_channels: Sequence[int] = (128, 128, 256, 256, 512),
        layers_per_block: int = 2,
        latent_channels: int = 256,
        norm_num_groups: int = 32,
        dropout: float = 0.0,
        num_vq_embeddings: int = 16384,
        vq_embed_dim: int = 256,
        bridge_type: str = "vqbridge",
        bridge_config: dict | None = None,
        codebook_l2_norm: bool = False,
        codebook_weight: float = 1.0,
        commitment_weight: float = 0.25,
        search_chunk_size: int = 4096,
        quantizer_type: str = "vq",
        quantizer_config: dict | None = None,
        quant_conv_kernel_size: int = 1,
        table_init: str = "auto",
        quantizer_precision: str = "fp32",
        table_dim: int | None = None,
        freeze_table: bool | None = None,
        table_update: str = "gradient",
        table_ema_decay: float = 0.99,
        scaling_factor: float = 1.0,
        force_upcast: bool = False,
        lookup_from_codebook: bool = False,
        attention_levels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, layers_per_block, latent_channels) < 1:
            raise ValueError("in_channels, out_channels, layers_per_block and latent_channels must be >= 1.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}.")
        if quant_conv_kernel_size < 1 or quant_conv_kernel_size % 2 == 0:
            raise ValueError(f"quant_conv_kernel_size must be odd and >= 1, got {quant_conv_kernel_size}.")
        if num_vq_embeddings < 1 or vq_embed_dim < 1:
            raise ValueError(f"num_vq_embeddings and vq_embed_dim must be >= 1, got {num_vq_embeddings}, {vq_embed_dim}.")
        if not scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0 (pipelines divide the latents by it), got {scaling_factor}.")
        block_out_channels = tuple(block_out_channels)
        if attention_levels is not None:
            attention_levels = tuple(sorted(set(attention_levels)))
        bridge_config = resolve_bridge_config(bridge_type, bridge_config)
        quantizer_cls = quantizer_class(quantizer_type)
        quantizer_config = quantizer_cls.complete_config(quantizer_config)  # its values: checked once, when built
        # JSON gives a list back; the saved bridge and quantizer configs are complete, so defaults changing later
        # cannot change them.
        self.register_to_config(block_out_channels=block_out_channels, bridge_config=bridge_config,
                                quantizer_config=quantizer_config, attention_levels=attention_levels)
        factor = 2 ** (len(block_out_channels) - 1)
        if sample_size < factor or sample_size % factor:
            raise ValueError(f"sample_size={sample_size} must be a positive multiple of the downsample factor "
                             f"{factor} (2 ** (len(block_out_channels) - 1)).")
        backbone = dict(latent_channels=latent_channels, block_out_channels=block_out_channels,
                        layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, dropout=dropout,
                        attention_levels=attention_levels)
        self.encoder = Encoder(in_channels=in_channels, **backbone)
        kernel = dict(kernel_size=quant_conv_kernel_size, padding=quant_conv_kernel_size // 2)
        self.quant_conv = nn.Conv2d(latent_channels, vq_embed_dim, **kernel)
        self.quantizer = quantizer_cls.build(
            num_vq_embeddings, vq_embed_dim, quantizer_config, bridge_type=bridge_type, bridge_config=bridge_config,
            codebook_l2_norm=codebook_l2_norm, codebook_weight=codebook_weight, commitment_weight=commitment_weight,
            search_chunk_size=search_chunk_size, table_init=table_init, quantizer_precision=quantizer_precision,
            table_dim=table_dim, freeze_table=freeze_table, table_update=table_update, table_ema_decay=table_ema_decay)
        if not self.quantizer.has_table and (table_dim not in (None, vq_embed_dim) or freeze_table is not None
                                             or table_update != "gradient"):
            raise ValueError(f"The {quantizer_type} quantizer has no codebook table: table_dim, freeze_table and "
                             "table_update do not apply to it (leave them unset).")
        self.quantizer.check_latent_side(sample_size // factor, f"sample_size / {factor}")
        self.post_quant_conv = nn.Conv2d(vq_embed_dim, latent_channels, **kernel)
        self.decoder = Decoder(out_channels=out_channels, **backbone)
        self.use_slicing = False  # AutoencoderMixin.enable_slicing: inference one image at a time

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """diffusers' `from_config` (also behind `from_pretrained`), reading configs of fvq-hf 0.1 too: their flat
        `bridge_patch_size`-style keys become the `bridge_config` of their bridge type."""
        return super().from_config(migrate_config(config), return_unused_kwargs, **kwargs)

    @property
    def bridge_name(self) -> str:
        """What the codebook bridge is, in words (for cards and logs)."""
        if not self.quantizer.has_table:
            return f"none (the {self.quantizer.display_name} quantizer has no codebook table)"
        bridge = self.quantizer.bridge
        return "none (plain VQ codebook)" if bridge is None else bridge.display_name

    @property
    def codebook_grid(self) -> tuple[int, int]:
        """`(h, w)` with h * w = K: the codebook laid out as an image (a transformer bridge's grid, else the
        squarest)."""
        bridge = self.quantizer.bridge if self.quantizer.has_table else None
        return getattr(bridge, "grid", None) or codebook_grid(self.config.num_vq_embeddings, 1)

    @property
    def downsample_factor(self) -> int:
        """Pixels per token along each side."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def codebook_size(self) -> int:
        return self.config.num_vq_embeddings

    @property
    def fixed_image_size(self) -> int | None:
        """The one image size the quantizer takes (a multi-scale one: its last scale times f); None when any
        multiple of f works."""
        side = self.quantizer.ids.fixed_latent_side
        return None if side is None else side * self.downsample_factor

    def require_one_code_per_position(self, user: str) -> None:
        """Raise a ValueError naming `user` (code files, the generator) unless each position gets one code."""
        if not self.quantizer.one_code_per_position:
            name = self.config.get("_name_or_path") or "This tokenizer"
            raise ValueError(f"{name} is a {self.config.quantizer_type} tokenizer ({self.quantizer.tokens_described}), "
                             f"and {user} take one code per position: use a quantizer_type 'vq' tokenizer.")

    def token_description(self) -> tuple[str, str]:
        """`(shape, words)` of the ids of one `sample_size` image, for model cards: `("16, 16", "16 x 16 per 256 px
        image")` for plain VQ (`quantizer.ids.describe`)."""
        size = self.config.sample_size
        return self.quantizer.ids.describe(size // self.downsample_factor, size)

    def token_grid_size(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """`(h, w)` of the token grid of an `H x W` image (default: `sample_size` square), the transformer's
        `token_grid_size`."""
        height = height or self.config.sample_size
        return height // self.downsample_factor, (width or height) // self.downsample_factor

    def _check_sample(self, sample: torch.Tensor) -> None:
        if not isinstance(sample, torch.Tensor):
            raise TypeError(f"Expected a torch.Tensor of shape (B, C, H, W), got {type(sample).__name__}; "
                            "use FVQPipeline or fvq_hf.data.image_io for PIL images and arrays.")
        f, c = self.downsample_factor, self.config.in_channels
        if sample.ndim != 4 or sample.shape[1] != c:
            raise ValueError(f"Expected images of shape (B, {c}, H, W), got {tuple(sample.shape)}.")
        if sample.shape[2] % f or sample.shape[3] % f or sample.shape[2] == 0 or sample.shape[3] == 0:
            raise ValueError(
                f"Image size {tuple(sample.shape[2:])} is not divisible by the downsample factor {f}; resize or "
                f"crop to a multiple of {f} (this model was trained at {self.config.sample_size} px)."
            )
        fixed = self.fixed_image_size
        if fixed is not None and tuple(sample.shape[2:]) != (fixed, fixed):
            raise ValueError(f"This {self.config.quantizer_type} tokenizer takes images of exactly {fixed} x {fixed} "
                             f"(its quantizer works on the {fixed // f} x {fixed // f} latent grid, "
                             f"{self.config.quantizer_config}); got {tuple(sample.shape[2:])}.")

    @property
    def quantize(self) -> QuantizeView:
        """The quantizer as diffusers' pipelines call `VQModel.quantize`: `quantize(latents)` and
        `quantize.get_codebook_entry(ids, shape)` (see `QuantizeView`). A view of `quantizer`, not a module of its
        own: it adds no state-dict keys."""
        return QuantizeView(self.quantizer)

    def enable_tiling(self) -> None:
        """Refused, as diffusers' `VQModel` refuses it: tiles of a VQ tokenizer would each be quantized and decoded
        on their own, with seams at their borders (and a multi-scale type's coarse scales span the whole image).
        `enable_slicing` bounds memory by one image instead."""
        raise NotImplementedError(f"{type(self).__name__} has no tiled encode/decode (nor has diffusers' VQModel): "
                                  "tiles would be quantized and decoded apart, with seams; use enable_slicing() to "
                                  "run one image at a time.")

    def _sliced(self, function, *batched: torch.Tensor) -> tuple:
        """`function(*batched)`, or with `use_slicing` once per image (along dim 0) with the outputs (tensors, or
        tuples of tensors) concatenated: the same outputs, memory bounded by one image."""
        if not self.use_slicing or batched[0].shape[0] <= 1:
            return function(*batched)
        parts = [function(*(t[i:i + 1] for t in batched)) for i in range(batched[0].shape[0])]
        if isinstance(parts[0], torch.Tensor):
            return torch.cat(parts)
        return tuple(torch.cat(column) for column in zip(*parts))

    def _encode(self, sample: torch.Tensor):
        """Images -> `(latents, QuantizerOutput)`: the pre-quantization latents and the quantizer's output on them."""
        self._check_sample(sample)
        latents = self.quant_conv(self.encoder(sample))
        return latents, self.quantizer(latents)

    def _decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latents `(B, d, h, w)` -> images, without quantizing again."""
        return self.decoder(self.post_quant_conv(quantized.to(self.post_quant_conv.weight.dtype)))

    @apply_forward_hook
    def encode(self, sample: torch.Tensor, return_dict: bool = True) -> FVQEncoderOutput | tuple:
        """`(B, C, H, W)` images -> latents `(B, d, h, w)` before quantization (diffusers' `VQModel.encode`), their
        quantized latents and token ids (`quantizer.indices_shape`). The tuple form is `(latents, quantized,
        indices)`."""

        def encode_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.LongTensor]:
            latents, quantized = self._encode(images)
            return latents, quantized.latents, quantized.indices

        output = FVQEncoderOutput(*self._sliced(encode_batch, sample))
        return output if return_dict else output.to_tuple()

    @apply_forward_hook
    def decode(self, h: torch.Tensor, force_not_quantize: bool = False, return_dict: bool = True,
               shape: tuple[int, ...] | None = None) -> FVQDecoderOutput | tuple:
        """Latents `(B, d, h, w)` -> images `(B, C, H, W)`, as diffusers' `VQModel.decode`: `h` are quantized first
        (the latents `encode` gives, quantized as the quantizer type does: a residual or multi-scale type quantizes
        them level by level, as in `forward`), unless `force_not_quantize`, where they are taken as quantized
        latents (`encode(x).quantized`, `quantizer.lookup(ids)`); with `config.lookup_from_codebook` and
        `force_not_quantize`, `h` are token ids and `shape` `(B, h, w, C)` (aMUSEd; see `QuantizeView`). The output
        has no `commit_loss` (VQModel's): `forward` gives the quantizer's losses for training."""
        if force_not_quantize and self.config.lookup_from_codebook:
            if shape is not None and self.use_slicing:
                h, shape = h.reshape(shape[0], -1), (1, *shape[1:])  # ids in any shape: one image's per slice
            sample = self._sliced(lambda ids: self._decode(self.quantize.get_codebook_entry(ids, shape)), h)
        else:
            if h.ndim != 4 or h.shape[1] != self.config.vq_embed_dim:
                raise ValueError(f"Expected latents of shape (B, {self.config.vq_embed_dim}, h, w), got "
                                 f"{tuple(h.shape)}; to decode token ids use `detokenize`.")
            sample = self._sliced(lambda z: self._decode(z if force_not_quantize else self.quantizer(z).latents), h)
        return FVQDecoderOutput(sample=sample) if return_dict else (sample,)

    @apply_forward_hook
    def tokenize(self, sample: torch.Tensor) -> torch.LongTensor:
        """`(B, C, H, W)` images in [-1, 1] -> token ids of `quantizer.indices_shape` (`(B, H/f, W/f)` for plain VQ)."""
        return self._sliced(lambda images: self._encode(images)[1].indices, sample)

    @apply_forward_hook
    def detokenize(self, indices: torch.LongTensor) -> torch.Tensor:
        """Token ids of `quantizer.indices_shape` -> `(B, C, h*f, w*f)` images; the inverse of `tokenize` up to
        reconstruction."""
        return self._sliced(lambda ids: self._decode(self.quantizer.lookup(ids)), indices)

    def forward(self, sample: torch.Tensor, return_dict: bool = True) -> FVQModelOutput | tuple:
        """Reconstruct `(B, C, H, W)` images; also returns the indices and the quantizer losses for training."""
        _, quantized = self._encode(sample)
        output = FVQModelOutput(self._decode(quantized.latents), quantized.indices, quantized.codebook_loss,
                                quantized.commitment_loss)
        return output if return_dict else output.to_tuple()

    @classmethod
    def from_original_checkpoint(cls, path_or_repo_id: str | os.PathLike, filename: str | None = None, *,
                                 output_loading_info: bool = False, **kwargs):
        """Load a checkpoint of the original code: the FVQ authors' (ViT or DiT bridge, their VQGAN-format fold, their
        VAR runs), LlamaGen's (VQ-16, VQ-8), VAR's (a multi-scale tokenizer) or VQGAN-LC's (`vqgan-lc-*.pth`: their
        frozen table and projector), from a local `.pt` / `.pth` / `.safetensors` file or a Hub repo file.

            FVQModel.from_original_checkpoint("FoundationVision/LlamaGen", filename="vq_ds16_c2i.pt")
            FVQModel.from_original_checkpoint("runs/fvq/0400000.pt")
            FVQModel.from_original_checkpoint("vqgan-lc-100K-f16-dim8.pth", keep_bridge=True)

        The architecture is read from tensor shapes; whether codes are l2-normalised from the file's `args`, else
        the release rules (LlamaGen's d = 8: yes; the FVQ and VQGAN-LC code: never), else it asks for
        `codebook_l2_norm=`.

        Keyword arguments: `weights` ("auto": `ema`, then `model`, then `state_dict`, as the authors' scripts),
        `codebook_l2_norm`, `sample_size` (256), `config` (check against this config instead; e.g.
        `{"quantizer_config": {"scales": [...]}}` for a VAR file whose scales are not VAR's), `trust_pickle`, the
        Hub's `revision`, `cache_dir`, `local_files_only`, `token`, and the options of the file's layout
        (`fvq_hf.conversion.layouts`): for the FVQ authors' ViT and DiT bridges `num_heads` (4 in every release), for
        a DiT bridge `dit_label` (label it is folded at), and for a DiT bridge or VQGAN-LC's projector `keep_bridge`
        (keep it trainable, as `bridge_type="dit"` or `"lc-linear"` / `"lc-mlp"` over their frozen table, instead of
        folding it: for fine-tuning; folding is the default). With `output_loading_info=True` also returns an
        `OriginalCheckpointInfo` saying what was decided and why.
        """
        from ..conversion.loader import load_original_checkpoint  # here: importing the model loads no layout

        model, info = load_original_checkpoint(path_or_repo_id, filename, model_class=cls, **kwargs)
        return (model, info) if output_loading_info else model

    @torch.no_grad()
    def fold_bridge(self) -> FVQModel:
        """An equivalent plain-VQ model: the bridged codebook written into its table, no bridge weights.

        It gives the same indices and reconstructions as this model, at the inference cost of plain VQ
        (the release's convert_fullvq2vq step). A quantizer without a table has no bridge to fold: a ValueError.
        """
        if not self.quantizer.has_table:
            raise ValueError(f"This {self.config.quantizer_type} tokenizer has no codebook table (its "
                             f"{self.quantizer.display_name} quantizer's codes are implicit), so there is no bridge "
                             "to fold: use it as it is.")
        folded = type(self).from_config({**self.config, "bridge_type": NO_BRIDGE, "bridge_config": None,
                                         "table_dim": None, "freeze_table": None})
        state = {k: v for k, v in self.state_dict().items()
                 if not k.startswith(("quantizer.embedding.", "quantizer.bridge."))}
        state["quantizer.embedding.weight"] = self.quantizer.codebook().detach().clone()
        folded.load_state_dict(state, strict=True)
        return folded.to(device=self.device).train(self.training)

    def add_bridge(self, bridge_type: str, bridge_config: dict | None = None) -> FVQModel:
        """This plain-VQ model with a fresh `bridge_type` bridge over its codebook, for fine-tuning with one (the
        inverse of `fold_bridge`): the encoder, decoder and quantizer weights are kept, the codebook becomes the
        bridge's input table. A VQBridge starts its output at zero, as in training from scratch, so the codes
        are learnt again from that table; SimVQ's linear bridge starts at a random map of it and keeps it frozen."""
        if self.config.bridge_type != NO_BRIDGE:
            raise ValueError(f"This model already has a bridge ({self.config.bridge_type}); fold it first "
                             "(fold_bridge) to put another one on its codebook.")
        bridged = type(self).from_config({**self.config, "bridge_type": bridge_type, "bridge_config": bridge_config})
        missing, unexpected = bridged.load_state_dict(self.state_dict(), strict=False)
        if unexpected or any(not key.startswith("quantizer.bridge.") for key in missing):
            raise ValueError(f"Cannot carry the weights over to a {bridge_type} bridge: missing {missing}, "
                             f"unexpected {unexpected}.")
        return bridged.to(device=self.device).train(self.training)

    def load_table(self, path: str | os.PathLike) -> dict[str, str]:
        """Fill the learnable table from a table file (`fvq-build-codebook`'s safetensors, or VQGAN-LC's `.pth`
        tensor, e.g. their `codebook-100K.pth`); returns its metadata. A `TableFileError` names the file and, where
        it does not fit, the config keys (num_vq_embeddings, table_dim) to change."""
        if not self.quantizer.has_table:
            raise ValueError(f"The {self.config.quantizer_type} quantizer has no codebook table to load.")
        table, metadata = load_table(path)
        check_table_fits(table, *self.quantizer.embedding.weight.shape, path)
        self.quantizer.load_table(table)
        return metadata

    def set_quantizer_precision(self, precision: str) -> None:
        """Where the quantizer runs under autocast from now on ("fp32" or "autocast"; see the config key), in place
        and in the config that `save_pretrained` writes. A type without the option (no table) refuses."""
        if not hasattr(self.quantizer, "quantizer_precision"):
            raise ValueError(f"The {self.config.quantizer_type} quantizer has no quantizer_precision option: it has "
                             "no table, bridge or nearest-code search to run in another precision.")
        if precision not in QUANTIZER_PRECISIONS:
            raise ValueError(f"quantizer_precision={precision!r}: choose one of {', '.join(QUANTIZER_PRECISIONS)}.")
        self.quantizer.quantizer_precision = precision
        self.register_to_config(quantizer_precision=precision)

    def model_card(self, repo_id: str | None = None, evaluations: dict | None = None, training: str | None = None,
                   pipeline: bool = False, datasets: list[str] | None = None, saved: bool = True):
        """A `huggingface_hub.ModelCard` (of the model, or of an `FVQPipeline` around it with `pipeline`): the
        config, a usage snippet, and the measured metrics; `datasets`: Hub ids of the training data.

        With `saved`, what is not given is taken from what was saved next to the weights this model was loaded from:
        the metrics and training summary of `fvq-train` / `fvq-eval` (`evaluation.json`), and for weights converted
        by `fvq-convert`, where they come from (`original_checkpoint.json`). A model trained from such weights is
        not them any more: its trainer passes `saved=False`.
        """
        folder = self.config.get("_name_or_path") if saved else None
        saved_evaluations, saved_training = load_evaluation(folder)
        return tokenizer_card(self.config, self.bridge_name, self.token_description(), repo_id,
                              evaluations or saved_evaluations, training or saved_training, pipeline=pipeline,
                              original=OriginalCheckpointInfo.load(folder), datasets=datasets)
