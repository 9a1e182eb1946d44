"""Config values of the wrong type are refused where a config is read, with the key named."""

from collections.abc import Sequence

import pytest

from fvq_hf import FVQModel, FVQTransformer
from fvq_hf.config_keys import fits

from .helpers import TINY_CONFIG, TINY_TRANSFORMER


@pytest.mark.parametrize(("value", "hint", "ok"), [
    (3, int, True), (True, int, False), ("3", int, False), (3, float, True), (2.5, float, True), (True, float, False),
    (None, int | None, True), ("a", str | None, True), ([1, 2], Sequence[int], True), ([1, "x"], Sequence[int], False),
    ((1, 2), Sequence[int], True), ({"a": 1}, dict | None, True), ([1], dict | None, False), (False, bool, True),
    (0, bool, False), ([1, 2], list[int], True),
])
def test_json_values_fit_their_annotation_as_config_files_write_them(value, hint, ok):
    assert fits(value, hint) is ok


@pytest.mark.parametrize(("change", "message"), [
    ({"num_vq_embeddings": "many"}, "FVQModel config: 'num_vq_embeddings' must be an integer, got 'many' (str)"),
    ({"block_out_channels": [32, "64"]}, "'block_out_channels' must be Sequence[int]"),
    ({"codebook_l2_norm": "no"}, "'codebook_l2_norm' must be true or false"),
    ({"bridge_config": {"depth": "two"}}, "bridge_config of the VQBridge (FVQ): 'depth' must be an integer"),
    ({"quantizer_type": "residual", "quantizer_config": {"depth": 2.5}},
     "quantizer_config of quantizer_type 'residual': 'depth' must be an integer, got 2.5"),
])
def test_tokenizer_configs_of_the_wrong_type(change, message):
    with pytest.raises(ValueError) as error:
        FVQModel.from_config({**TINY_CONFIG, **change})
    assert message in str(error.value)


def test_transformer_configs_of_the_wrong_type():
    with pytest.raises(ValueError, match="FVQTransformer config: 'hidden_size' must be an integer, got '32'"):
        FVQTransformer.from_config({**TINY_TRANSFORMER, "hidden_size": "32"})
    assert FVQTransformer.from_config(TINY_TRANSFORMER).config.hidden_size == 32
