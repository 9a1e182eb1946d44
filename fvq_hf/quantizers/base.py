"""The table-owning base of the quantizer types: the learnable table, the bridge that maps it to the codebook, and
the level loop (nearest codes of the residual, partial-sum losses, straight-through estimator).

A table type is a `TableQuantizer` subclass that says how one level quantizes the residual (`quantize_level`),
how the levels' ids join (`join_levels`), what its ids are (`ids_spec`) and how ids go back to latents
(`lookup`). What consumers rely on (the ids, `forward`, `lookup`) is the `Quantizer` protocol's
(`protocol.py`); a type without a table derives from that directly.

Two widths are two facts: `table_dim` (D), the width of the learnable table, and `code_dim` (d), the width of the
codes and latents. They are equal unless a bridge that `maps_width` (VQGAN-LC's projectors) maps the `(K, D)` table
to the `(K, d)` codebook. The table is trained unless the bridge freezes it (`freezes_table`) or `freeze_table`
says otherwise; `load_table` fills it from a table file.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..bridges import NO_BRIDGE, CodebookBridge, build_bridge
from ..search import autocast_search, nearest_code
from .ema_table import EMATable
from .protocol import Quantizer, QuantizerOutput

# How the learnable table starts: "auto" (the bridge's rule; uniform(-1/K, 1/K) without one, as LlamaGen and the
# FVQ code), "uniform" (that, whatever the bridge), "normal" (N(0, 1): `nn.Embedding`'s default, which the FVQ
# authors' VAR variant keeps).
TABLE_INITS = ("auto", "uniform", "normal")
# How the table learns: "gradient" (the losses' gradients, through the bridge if there is one) or "ema" (moving
# averages of the vectors each code quantizes: VQGAN-LC's VQGAN-EMA baseline, `ema_table.py`).
TABLE_UPDATES = ("gradient", "ema")
# Where the bridge and the nearest-code search run when the caller trains under autocast (bf16 / fp16 mixed
# precision): "fp32" (this package's default: autocast off inside the quantizer, the exact nearest code) or
# "autocast" (under the caller's autocast, as the FVQ authors' plain and residual models run in their bf16 loop).
QUANTIZER_PRECISIONS = ("fp32", "autocast")


class TableQuantizer(Quantizer):
    """Quantizes `(B, d, h, w)` latents with the codes of `codebook = bridge(embedding.weight)`.

    `embedding` is the learnable `(K, table_dim)` table; `bridge` any `CodebookBridge` (see `fvq_hf.bridges`), or
    None for plain VQ, where the table is the codebook. The bridge says how the table is initialised and whether
    it stays frozen. With `codebook_l2_norm`, latents and codes are l2-normalised before the search (LlamaGen's
    default).

    `quantizer_precision`: under a caller's autocast (mixed-precision training), "fp32" (the default) runs the
    bridge, the search and the losses in fp32 with autocast off, and the search finds the exact nearest code;
    "autocast" runs them under the caller's autocast as the FVQ authors' plain and residual models do in their bf16
    loop: the bridge's matmuls in bf16, and their distance `|z|^2 + |e|^2 - 2 z.e` computed op for op as autocast
    casts it (`fvq_hf.search.autocast_search`), so that a near-tie goes to whichever code bf16 rounding favours.
    Why fp32 is the default: on random codes and latents rounded to bf16, a bf16 cross term (a GPU's autocast)
    takes another code than the nearest for 0.8% of latents at K = 16,384, d = 256, 4.1% at K = 16,384, d = 8 and
    9.3% at K = 262,144, d = 8 (a CPU's autocast, which also sums the norms in bf16: 8.7%, 8.1%, 14.7%;
    `benchmarks/autocast_search_ids.py`); the fp32 search takes the nearest. Without autocast the two are the same.

    `config`: the type's `quantizer_config` values (a subclass passes its keywords here).
    """

    has_table = True
    # `quantize_level` assigns the residual's own rows to codes, so an EMA table can average them (not multi-scale,
    # whose codes quantize pooled maps).
    supports_ema: bool = True
    # Whether the type can l2-normalise (a residual is not a direction: unit codes cannot sum to it).
    supports_l2_norm = True

    def __init__(
        self,
        embedding: nn.Embedding,
        bridge: CodebookBridge | None = None,
        config: Mapping | None = None,
        *,
        codebook_l2_norm: bool = False,
        codebook_weight: float = 1.0,
        commitment_weight: float = 0.25,
        search_chunk_size: int = 4096,
        table_init: str = "auto",
        quantizer_precision: str = "fp32",
        freeze_table: bool | None = None,
        table_update: str = "gradient",
        table_ema_decay: float = 0.99,
    ) -> None:
        codebook_size, table_dim = embedding.weight.shape
        # The codes are as wide as the table, unless the bridge maps the table's width to the codes'.
        code_dim = bridge.code_dim if bridge is not None and bridge.maps_width else table_dim
        super().__init__(codebook_size, code_dim, config)
        self.table_dim = table_dim
        if codebook_weight < 0 or commitment_weight < 0 or search_chunk_size < 1:
            raise ValueError("codebook_weight and commitment_weight must be >= 0 and search_chunk_size >= 1.")
        if table_init not in TABLE_INITS:
            raise ValueError(f"table_init={table_init!r}: choose one of {TABLE_INITS}.")
        if quantizer_precision not in QUANTIZER_PRECISIONS:
            raise ValueError(f"quantizer_precision={quantizer_precision!r}: choose one of {QUANTIZER_PRECISIONS} "
                             "(fp32: autocast off in the quantizer; autocast: under the caller's, as the FVQ code).")
        if codebook_l2_norm and not self.supports_l2_norm:
            raise ValueError(f"codebook_l2_norm=True cannot be combined with {self.display_name} quantization: a "
                             "residual is not a direction, and unit codes cannot sum to it.")
        if codebook_l2_norm and bridge is not None and bridge.starts_at_zero:
            # The VQBridge's zero-initialised output sits at the singular point of the normalisation: the first
            # gradients are ~1e12 and training diverges (measured). The released FVQ runs use no l2-norm.
            raise ValueError(f"codebook_l2_norm=True cannot be combined with the {bridge.display_name}: it starts "
                             "from an all-zero codebook, where l2-normalisation has no gradient to give. Use "
                             "codebook_l2_norm=False, as the released FVQ models do.")
        self.codebook_l2_norm = codebook_l2_norm
        self.codebook_weight = codebook_weight
        self.commitment_weight = commitment_weight
        self.search_chunk_size = search_chunk_size
        self.table_init = table_init
        self.quantizer_precision = quantizer_precision
        self.embedding = embedding
        self.bridge = bridge
        self.reset_parameters()
        if table_update not in TABLE_UPDATES:
            raise ValueError(f"table_update={table_update!r}: choose one of {TABLE_UPDATES}.")
        self.table_update = table_update
        self.ema = None
        if table_update == "ema":
            if bridge is not None or not self.supports_ema or freeze_table:
                why = (f"the {bridge.display_name} computes the codebook from the table" if bridge is not None else
                       f"{self.display_name} quantization assigns pooled maps, not the latents' own vectors"
                       if not self.supports_ema else "freeze_table=True keeps the table as it is")
                raise ValueError(f"table_update='ema' writes the codebook as averages of the vectors each code "
                                 f"quantizes, but {why}: use table_update='gradient'.")
            self.ema = EMATable(self.embedding.weight, table_ema_decay)
            freeze_table = True  # no gradient: the averages write it
        if freeze_table is None:
            freeze_table = bridge is not None and bridge.freezes_table
        self.freeze_table = freeze_table
        self.embedding.weight.requires_grad_(not freeze_table)
        self._cache: tuple[tuple, torch.Tensor] | None = None

    @classmethod
    def build(cls, codebook_size: int, code_dim: int, config: Mapping, *, bridge_type: str = NO_BRIDGE,
              bridge_config: Mapping | None = None, **options) -> TableQuantizer:
        """The table, then the bridge (`bridge_config` complete), then the quantizer: in this order, so that a
        seed gives the same initial weights as fvq-hf 0.1."""
        table_dim = options.pop("table_dim", None)
        table = nn.Embedding(codebook_size, table_dim or code_dim)  # D = d unless the bridge maps widths
        bridge = build_bridge(bridge_type, codebook_size, code_dim, bridge_config, table_dim)
        return cls(table, bridge, **config, **options)

    # --- precision ---------------------------------------------------------------------------------------------
    def under_autocast(self, device_type: str) -> bool:
        """Whether the bridge and the search run under the caller's autocast now ("autocast", and one is on)."""
        return self.quantizer_precision == "autocast" and torch.is_autocast_enabled(device_type)

    def precision(self, device_type: str) -> AbstractContextManager:
        """The context the bridge and the search run in: the caller's autocast, or autocast off (fp32)."""
        return nullcontext() if self.under_autocast(device_type) else torch.autocast(device_type, enabled=False)

    def nearest(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
        """`(N, d)` vectors -> `(N,)` ids of their nearest codes: exact in fp32, or the FVQ authors' distance under
        the caller's autocast (see the class docstring)."""
        if self.under_autocast(vectors.device.type):
            return autocast_search(vectors, codebook.detach(), self.search_chunk_size)
        return nearest_code(vectors, codebook.detach(), self.search_chunk_size)

    # --- the codebook ------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        if self.table_init == "normal":
            nn.init.normal_(self.embedding.weight)
        elif self.bridge is None or self.table_init == "uniform":  # as released (LlamaGen, FVQ): uniform(-1/K, 1/K)
            nn.init.uniform_(self.embedding.weight, -1.0 / self.codebook_size, 1.0 / self.codebook_size)
        else:
            self.bridge.init_table(self.embedding.weight)

    @torch.no_grad()
    def load_table(self, table: torch.Tensor) -> None:
        """Fill the `(K, D)` table with `table` (e.g. a k-means table of pretrained features: `fvq_hf.data.table_file`);
        a ValueError names the shapes where it does not fit."""
        if tuple(table.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(f"A table of shape {tuple(table.shape)} does not fit this quantizer's (K, D) = "
                             f"{tuple(self.embedding.weight.shape)}.")
        self.embedding.weight.copy_(table.to(self.embedding.weight))
        if self.ema is not None:
            self.ema.restart(self.embedding.weight)

    def codebook(self, label: int | None = None) -> torch.Tensor:
        """The `(K, d)` codebook used for quantization: `bridge(table)`, l2-normalised if configured. `label`: the
        label to compute it at, for a bridge whose `image_labels` gives labels (None: the bridge's own).

        Outside training and autograd the result is cached until a parameter changes in place.
        """
        cacheable = not (self.training or torch.is_grad_enabled())
        device_type = self.embedding.weight.device.type
        rounded = torch.get_autocast_dtype(device_type) if self.under_autocast(device_type) else None
        key = (rounded, label, *((p.data_ptr(), p._version) for p in self.parameters()))
        if cacheable and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        table = self.embedding.weight.float()
        with self.precision(device_type):
            if self.bridge is None:
                codebook = table
            else:
                codebook = self.bridge(table) if label is None else self.bridge(table, label=label)
        if self.codebook_l2_norm:
            codebook = F.normalize(codebook, dim=-1)
        self._cache = (key, codebook) if cacheable else None
        return codebook

    def codes_of(self, indices: torch.LongTensor) -> torch.Tensor:
        """Checked ids of any shape `S` -> `(*S, d)` codes of the (bridged) codebook."""
        return self.codebook()[indices.long()]

    # --- the level loop ----------------------------------------------------------------------------------------
    def flatten(self, latents: torch.Tensor) -> torch.Tensor:
        """`(B, d, h, w)` fp32 latents -> the form the levels work on (`z`); `unflatten` is its inverse."""
        return latents

    def unflatten(self, z: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return z

    def quantize_level(self, level: int, residual: torch.Tensor, codebook: torch.Tensor
                       ) -> tuple[torch.LongTensor, torch.Tensor]:
        """The ids of level `level` for `residual` (of `z`'s form) and their contribution to the latent (same form)."""
        raise NotImplementedError

    def join_levels(self, ids: list[torch.LongTensor], latents: torch.Tensor) -> torch.LongTensor:
        """The ids of every level -> one batch of ids of `indices_shape`."""
        raise NotImplementedError

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """`(B, d, h, w)` latents -> `QuantizerOutput` with `(B, d, h, w)` quantized latents and ids of
        `indices_shape`. Each level quantizes what the levels before it left; the losses are averaged over the
        partial sums, and the straight-through estimator passes the gradient of the sum to the encoder.

        Where the bridge gives the images of a training batch codebooks at different labels (`image_labels`: a
        DiT bridge with label_rule="dropout"), the images of each label are quantized with that label's codebook,
        one bridge forward per distinct label, and the losses are the means over the whole batch, as the FVQ
        authors' one codebook per image (`vq_model_qbridge.py`, `VectorQuantizer.forward`)."""
        self.check_latents(latents)
        labels = None if self.bridge is None else self.bridge.image_labels(latents.shape[0], latents.device)
        if labels is None:
            return self.quantize_images(latents)
        groups = [(label, (labels == label).nonzero().squeeze(1)) for label in labels.unique().tolist()]
        parts = [self.quantize_images(latents[images], label) for label, images in groups]
        restore = torch.cat([images for _, images in groups]).argsort()  # back to the batch's order
        shares = [len(images) / len(labels) for _, images in groups]  # every image has as many latent values
        return QuantizerOutput(torch.cat([part.latents for part in parts])[restore],
                               torch.cat([part.indices for part in parts])[restore],
                               sum(share * part.codebook_loss for share, part in zip(shares, parts)),
                               sum(share * part.commitment_loss for share, part in zip(shares, parts)))

    def quantize_images(self, latents: torch.Tensor, label: int | None = None) -> QuantizerOutput:
        """`forward` for `(b, d, h, w)` latents quantized with one codebook, the one at `label` (see `codebook`)."""
        levels, device_type = self.num_levels, latents.device.type
        with self.precision(device_type):
            z = self.flatten(latents if self.under_autocast(device_type) else latents.float())
            if self.codebook_l2_norm:
                z = F.normalize(z, dim=-1)
            codebook = self.codebook(label)
            residual, z_q, ids = z.detach(), 0.0, []
            codebook_loss = commitment_loss = 0.0
            ema = self.ema if self.ema is not None and self.training else None
            for level in range(levels):
                index, contribution = self.quantize_level(level, residual, codebook)
                if ema is not None:
                    ema.accumulate(residual, index)
                z_q = z_q + contribution  # the partial sum; after one level, exactly the nearest codes
                if level + 1 < levels:
                    residual = residual - contribution.detach()
                codebook_loss = codebook_loss + F.mse_loss(z_q, z.detach())
                commitment_loss = commitment_loss + F.mse_loss(z, z_q.detach())
                ids.append(index)
            codebook_loss = self.codebook_weight * (codebook_loss / levels)
            commitment_loss = self.commitment_weight * (commitment_loss / levels)
            if ema is not None:  # the averages, not a loss, move the table (theirs: the commitment term alone)
                codebook_loss = codebook_loss * 0.0
                ema.update(self.embedding.weight)
            z_q = z + (z_q - z).detach()  # straight-through estimator
        quantized = self.unflatten(z_q, latents).to(latents.dtype)
        return QuantizerOutput(quantized, self.join_levels(ids, latents), codebook_loss, commitment_loss)
