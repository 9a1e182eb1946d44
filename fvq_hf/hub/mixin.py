"""What every fvq-hf model and pipeline adds to diffusers: a push with a generated card (`CardPushMixin`, for both),
and for models strict loading and folders diffusers' generic loaders open (`StrictHubMixin`)."""

from __future__ import annotations

import os

from huggingface_hub import constants

from ..config_keys import check_config_types
from .model_card import push_with_card
from .paths import refuse_missing_folder
from .remote_code import add_auto_map


class CardPushMixin:
    """`push_to_hub` that uploads a generated model card; the class provides `model_card(repo_id, evaluations)`."""

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, create_pr: bool = False, evaluations: dict | None = None) -> str:
        """Upload what `save_pretrained` writes (config and safetensors weights, or model_index.json and every
        component), with the generated model card holding the measured metrics (see `model_card`)."""
        return push_with_card(self, repo_id, self.model_card(repo_id, evaluations),
                              commit_message or f"Upload {type(self).__name__}", private, token, create_pr)


class StrictHubMixin(CardPushMixin):
    """Put before `ModelMixin`; the class provides `model_card(repo_id, evaluations) -> ModelCard`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """diffusers' `from_pretrained` that refuses weights which do not match the config.

        diffusers only warns about missing weights (and leaves them on the meta device); here any missing,
        unexpected or mismatched tensor is an error that names the tensors.
        """
        want_info = kwargs.pop("output_loading_info", False)
        refuse_missing_folder(pretrained_model_name_or_path)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        except ValueError as error:
            if "expected shape" not in str(error):
                raise
            raise ValueError(f"The weights in {pretrained_model_name_or_path} do not match its config.json: "
                             f"{error}. Use the config.json that was saved with these weights.") from error
        except OSError as error:
            if os.path.isdir(pretrained_model_name_or_path):
                raise
            offline = "HF_HUB_OFFLINE is set, and it is not in the local cache" if constants.HF_HUB_OFFLINE else \
                "it could not be fetched from the Hub or found in the local cache"
            raise OSError(f"{pretrained_model_name_or_path} is not a local folder, and {offline} ({error}). Check the "
                          "id (and subfolder / revision), or download it once while online.") from error
        problems = {k: info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
        if problems:
            raise ValueError(f"The weights in {pretrained_model_name_or_path} do not match its config.json "
                             f"({problems}). Use the config.json that was saved with these weights.")
        return (model, info) if want_info else model

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """diffusers' `from_config`, reading `auto_map` (for diffusers' generic loaders) as no setting."""
        if config is not None and "auto_map" in config:
            config = {k: v for k, v in config.items() if k != "auto_map"}
        # A value of the wrong type is refused here with its key named (the model would fail deep inside).
        check_config_types(cls.__init__, {**(config or {}), **kwargs}, f"{cls.__name__} config")
        return super().from_config(config, return_unused_kwargs, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """diffusers' `save_pretrained`, plus what `diffusers.AutoModel.from_pretrained(folder,
        trust_remote_code=True)` needs (an `auto_map` entry and its module file, see `remote_code`)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            add_auto_map(save_directory, type(self).__name__)
