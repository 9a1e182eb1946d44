"""Checkpoints of the original code (the FVQ authors', LlamaGen's, VAR's, VQGAN-LC's) into `FVQModel`: `layouts` (a
registry of original layouts, each with its own options), `loader` (reading files and building the model;
`FVQModel.from_original_checkpoint` is the way in, `fvq-convert` its command line) and `original_info` (what a
conversion decided, its `original_checkpoint.json` file and the release facts; torch-free, for model cards). The loader
is given the model class: it never imports the tokenizer, which imports the loader only when a checkpoint is
converted."""
