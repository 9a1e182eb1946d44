"""FVQGenerationPipeline: class labels in, images out (an FVQTransformer samples tokens, an FVQModel decodes them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

from ..hub.evaluation_file import load_evaluation
from ..hub.model_card import generator_card
from ..prior.transformer import FVQTransformer
from ..tokenizer import FVQModel
from .base import HubPipeline, check_output_type, format_images
from .sampling import check_sampling_args, generate_tokens


@dataclass
class FVQGenerationPipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` `(B, H, W, 3)` in [0, 1], or `torch.Tensor` `(B, 3, H, W)` in
            [-1, 1]): the generated images, as `output_type` asked.
        indices (`torch.LongTensor` of shape `(B, h, w)`): the sampled token ids.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    indices: torch.LongTensor


class FVQGenerationPipeline(HubPipeline):
    r"""Class-conditional image generation: an FVQTransformer samples a token grid, the FVQ tokenizer decodes it.

        pipe = FVQGenerationPipeline(transformer=transformer, vq=tokenizer)   # or .from_pretrained(folder / id)
        out = pipe(class_labels=[3, 3, 7], guidance_scale=4.0, generator=torch.Generator().manual_seed(0))
        out.images, out.indices                 # images of (h * f) x (w * f) px, (B, h, w) token ids

    `class_labels` are ids in `[0, num_classes)` or, when the transformer's config has `class_names`, names.
    The same `generator` seed gives the same images.
    """

    model_cpu_offload_seq = "transformer->vq"

    def __init__(self, transformer: FVQTransformer, vq: FVQModel) -> None:
        super().__init__()
        vq.require_one_code_per_position("FVQTransformer and its pipeline")
        if transformer.config.vocab_size != vq.codebook_size:
            raise ValueError(f"The transformer's vocabulary ({transformer.config.vocab_size:,} token ids) does not "
                             f"match the tokenizer's codebook ({vq.codebook_size:,} codes): a transformer must be "
                             "trained on codes of the tokenizer it is paired with.")
        self.register_modules(transformer=transformer, vq=vq)

    def model_card(self, repo_id: str | None = None, evaluations: dict | None = None):
        """The transformer's card in its pipeline form, with the metrics saved next to its weights."""
        saved, training = load_evaluation(self.transformer.config.get("_name_or_path"))
        return generator_card(self.transformer.config, repo_id, evaluations or saved, training, pipeline=True)

    @property
    def labels(self) -> dict[str, int]:
        """Class name -> id, when the transformer's config names its classes (DiT pipeline's `labels`)."""
        return {name: i for i, name in enumerate(self.transformer.config.class_names or [])}

    def get_label_ids(self, class_labels: int | str | Sequence[int | str] | torch.Tensor) -> torch.LongTensor:
        """Ids or names (one or a list) -> `(B,)` ids on the pipeline's device; ValueError for unknown names or ids."""
        if isinstance(class_labels, torch.Tensor):
            labels = class_labels.reshape(-1).tolist()
        else:
            labels = [class_labels] if isinstance(class_labels, (int, str)) else list(class_labels)
        if not labels:
            raise ValueError("class_labels is empty: give at least one class id or name.")
        unknown = [x for x in labels if isinstance(x, str) and x not in self.labels]
        if unknown:
            known = ", ".join(self.labels) or "none (this model's config has no class_names)"
            raise ValueError(f"Unknown class name(s) {unknown}; known names: {known}.")
        ids = torch.tensor([self.labels[x] if isinstance(x, str) else int(x) for x in labels], dtype=torch.long)
        self.transformer.check_class_labels(ids, allow_null=False)
        return ids.to(self._execution_device)

    @torch.no_grad()
    def __call__(self, class_labels: int | str | Sequence[int | str] | torch.Tensor, guidance_scale: float = 4.0,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True, output_type: str = "pil",
                 return_dict: bool = True) -> FVQGenerationPipelineOutput | tuple:
        """Generate one image per class label.

        Args:
            class_labels: ids or names, one per image.
            guidance_scale: classifier-free guidance on the logits, `uncond + s * (cond - uncond)`; 1 turns it off.
            temperature: softmax temperature; 0 decodes greedily.
            top_k, top_p: keep only the k most likely tokens / the nucleus of probability p (None: no filter).
            generator: a `torch.Generator` on the pipeline's device, for reproducible sampling.
            use_cache: sample with a key-value cache (one token's work per step); False re-runs the prefix.
        """
        check_output_type(output_type)
        check_sampling_args(guidance_scale, temperature, top_k, top_p)
        labels = self.get_label_ids(class_labels)
        indices = generate_tokens(self.transformer, labels, guidance_scale, temperature, top_k, top_p, generator,
                                  use_cache, callback=self._progress())
        images = format_images(self.vq.detokenize(indices), output_type)
        self.maybe_free_model_hooks()
        output = FVQGenerationPipelineOutput(images, indices)
        return output if return_dict else output.to_tuple()

    def _progress(self):
        bar = self.progress_bar(total=self.transformer.num_tokens)

        def update(step: int, total: int) -> None:
            bar.update(1)
            if step == total:
                bar.close()

        return update
