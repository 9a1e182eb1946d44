"""Checkpoints of the original code (the FVQ authors', LlamaGen's, VAR's) into `FVQModel`: `layouts` (one object per
original layout, in an ordered table) and `loader` (reading files and building the model; `FVQModel.from_original_
checkpoint` is the way in, `fvq-convert` its command line). The loader is given the model class: it never imports
the tokenizer, which imports it."""
