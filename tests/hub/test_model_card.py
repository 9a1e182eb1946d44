"""Model cards carry the metadata the Hub reads, and it parses back with huggingface_hub's own readers."""

from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from fvq_hf.hub.model_card import tokenizer_card

from ..helpers import make_tiny_model

EVALUATIONS = {"builtin:heldout": {"usage": 0.7168, "perplexity": 858.9, "psnr": 21.27, "ssim": 0.49,
                                   "num_tokens": 21312, "lpips": float("nan")}}


def test_tokenizer_card_metadata_parses_back(tmp_path):
    model = make_tiny_model()
    card = tokenizer_card(model.config, model.bridge_name, model.token_description(), "org/fvq-tiny", EVALUATIONS,
                          datasets=["imagenet-1k"])
    card.save(tmp_path / "README.md")
    meta = metadata_load(tmp_path / "README.md")
    assert meta["library_name"] == "fvq-hf" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "image-to-image" and "image-tokenization" in meta["tags"]
    assert meta["datasets"] == ["imagenet-1k"]
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "fvq-tiny"
    assert {(r.metric_type, r.metric_value) for r in results} == {
        ("codebook-usage", 0.7168), ("code-perplexity", 858.9), ("psnr", 21.27), ("ssim", 0.49)}  # NaN LPIPS left out
    assert {r.dataset_name for r in results} == {"builtin:heldout"}
    assert ModelCard(str(card)).data.eval_results == card.data.eval_results


def test_a_card_without_metrics_has_no_model_index():
    model = make_tiny_model()
    card = tokenizer_card(model.config, model.bridge_name, model.token_description(), "org/fvq-tiny")
    assert "model-index" not in card.data.to_dict() and "Not evaluated yet" in str(card)


def test_the_card_states_the_ids_of_each_quantizer_type():
    cards = {quantizer_type: str(model.model_card("org/x")) for quantizer_type, model in (
        ("vq", make_tiny_model()),
        ("residual", make_tiny_model(quantizer_type="residual", quantizer_config={"depth": 3})),
        ("multiscale", make_tiny_model(quantizer_type="multiscale", quantizer_config={"scales": [1, 3, 8]})))}
    assert "| tokens | 8 x 8 per 32 px image |" in cards["vq"] and "-> (B, 8, 8)" in cards["vq"]
    assert "8 x 8 positions x 3 residual codes" in cards["residual"] and "-> (B, 8, 8, 3)" in cards["residual"]
    assert "| tokens | 74 per 32 px image: multi-scale (VAR), scales [1, 3, 8]" in cards["multiscale"]
    assert "-> (B, 74)" in cards["multiscale"]
