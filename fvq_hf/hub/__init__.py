"""The Hub side: strict loading and one push with a generated card (`mixin`), the card text (`model_card`), folders
that diffusers' generic loaders open (`remote_code`), and publishing the presets (`publish`).

Nothing is imported here, so that the models can use `hub.mixin` without loading `hub.publish`, which uses them.
"""
