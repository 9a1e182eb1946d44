"""Codebook tables from a frozen pretrained encoder's features, as VQGAN-LC makes its codebook (Zhu et al., arXiv
2406.11837): `features` (the encoders: a transformers CLIP vision tower, or this package's tokenizer encoder, and
the pooling), `images` (the views a build reads, with their groups), `sampling` (the per-group cap that bounds
memory), `kmeans` (FAISS Lloyd), `build` (the build behind `fvq-build-codebook`).

    from fvq_hf.codebook_building import CodebookBuildConfig, build_codebook

    result = build_codebook(CodebookBuildConfig(encoder="outputs/fvq-cpu-4k/model", data="builtin",
                                                output="tables/cpu-4k.safetensors", codebook_size=4096, pool=2,
                                                groups="global", random_crops=720, samples_per_group=200_000))
    result.table.shape   # (4096, 64)
"""

from .build import GROUPINGS, CodebookBuildConfig, CodebookBuildResult, build_codebook

__all__ = ["GROUPINGS", "CodebookBuildConfig", "CodebookBuildResult", "build_codebook"]
