"""Shared tester mixins, in the habit of diffusers' tests/models/testing_utils: one test per concern, written once.

A test class sets the class under test and says how to build a tiny instance and how to get a deterministic
output from it; the mixin checks saving, loading, dtypes and refusals the same way for every class.
"""

from __future__ import annotations

import json

import pytest
import torch

from fvq_hf.hub.remote_code import REMOTE_MODULE


class ModelHubTests:
    """`save_pretrained` / `from_pretrained` of an fvq-hf model: exact round trip, strict loading, dtype."""

    model_class: type
    # A config key and a value that changes the shape of a saved tensor (the weights then no longer fit).
    breaking_change: tuple[str, object]

    def make_model(self):
        raise NotImplementedError

    def output(self, model) -> torch.Tensor:
        """A deterministic output of `model` (eval mode, no grad)."""
        raise NotImplementedError

    def check_low_precision(self, model) -> None:
        """Class-specific checks of a model loaded with `torch_dtype=torch.bfloat16`."""

    def test_save_load_round_trip_is_exact(self, tmp_path):
        model = self.make_model().eval()
        model.save_pretrained(tmp_path)
        assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
        loaded, info = self.model_class.from_pretrained(tmp_path, output_loading_info=True)
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
        for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name
        with torch.no_grad():
            assert torch.equal(self.output(loaded.eval()), self.output(model))

    def test_weights_of_another_config_are_refused(self, tmp_path):
        self.make_model().save_pretrained(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        key, value = self.breaking_change
        config[key] = value
        (tmp_path / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match="do not match its config.json"):
            self.model_class.from_pretrained(tmp_path)

    def test_corrupt_weights_file(self, tmp_path):
        self.make_model().save_pretrained(tmp_path)
        (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
        with pytest.raises(OSError, match="diffusion_pytorch_model.safetensors"):
            self.model_class.from_pretrained(tmp_path)

    def test_folder_without_config(self, tmp_path):
        with pytest.raises(OSError, match="config.json"):
            self.model_class.from_pretrained(tmp_path)

    def test_torch_dtype(self, tmp_path):
        self.make_model().save_pretrained(tmp_path)
        model = self.model_class.from_pretrained(tmp_path, torch_dtype=torch.bfloat16).eval()
        assert model.dtype == torch.bfloat16
        self.check_low_precision(model)


class PipelineHubTests:
    """`save_pretrained` / `from_pretrained` of an fvq-hf pipeline: same outputs back, clear errors otherwise."""

    pipeline_class: type

    def make_pipeline(self):
        raise NotImplementedError

    def outputs(self, pipe) -> tuple[torch.Tensor, ...]:
        """Deterministic outputs of `pipe`."""
        raise NotImplementedError

    def test_save_load_round_trip(self, tmp_path):
        pipe = self.make_pipeline()
        pipe.save_pretrained(tmp_path)
        index = json.loads((tmp_path / "model_index.json").read_text())
        assert index["_class_name"] == [REMOTE_MODULE, self.pipeline_class.__name__]  # for diffusers' generic loader
        loaded = self.pipeline_class.from_pretrained(tmp_path)
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is self.pipeline_class
        for a, b in zip(self.outputs(pipe), self.outputs(loaded)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    def test_a_folder_that_is_not_a_pipeline(self, tmp_path):
        (tmp_path / "config.json").write_text("{}")
        with pytest.raises(OSError, match="has no model_index.json"):
            self.pipeline_class.from_pretrained(tmp_path)

    def test_hub_id_not_in_the_cache_while_offline(self, tmp_path):
        with pytest.raises(OSError, match="cannot be fetched from the Hub or found in the local cache"):
            self.pipeline_class.from_pretrained("org/not-cached", cache_dir=tmp_path)
