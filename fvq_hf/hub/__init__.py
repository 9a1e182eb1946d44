"""The Hub support the models use: strict loading and one push with a generated card (`mixin`), the card text
(`model_card`), what a reported value is (`reports`), the metrics kept next to weights (`evaluation_file`), folders
that diffusers' generic loaders open (`remote_code`) and local paths told from hub ids (`paths`). It sits below the
models and imports none of them; publishing the presets, which loads the models, is `fvq_hf.publishing`.

Nothing is imported here, so that a model loads only the modules it uses.
"""
