import json

import pytest
import torch

from fvq_hf import FVQGenerationPipeline, FVQTransformer
from fvq_hf.cli.train_transformer import build_config, main
from fvq_hf.training import TransformerTrainConfig, transformer_loop
from fvq_hf.training.codes import extract_codes
from fvq_hf.training.transformer_trainer import train

from ..helpers import TINY_TRANSFORMER, make_tiny_model, perturb_bridge, write_config, write_images


@pytest.fixture
def codes(tmp_path):
    """Codes of a tiny tokenizer over two classes of images, plus held-out codes, and a small transformer preset."""
    tokenizer = make_tiny_model().eval()
    perturb_bridge(tokenizer)  # distinct codes: the zero-initialised bridge maps every token to one code
    tokenizer.save_pretrained(tmp_path / "tok")
    for name, seed in (("a", 0), ("b", 1)):
        write_images(tmp_path / "data" / name, count=6, seed=seed)
        write_images(tmp_path / "heldout" / name, count=2, seed=seed + 10)
    extract_codes(str(tmp_path / "tok"), str(tmp_path / "data"), tmp_path / "codes", num_workers=0)
    extract_codes(str(tmp_path / "tok"), str(tmp_path / "heldout"), tmp_path / "codes-heldout", num_workers=0)
    FVQTransformer(**{**TINY_TRANSFORMER, "vocab_size": 64, "num_classes": 7, "class_names": None,
                      "dropout": 0.1}).save_config(
        tmp_path / "preset")
    return tmp_path


def config_for(root, out="run", *, eval_codes=None, class_dropout=0.1, **loop) -> TransformerTrainConfig:
    """A seconds-long run on the fixture's codes; `loop` changes its LoopConfig."""
    loop = transformer_loop(output_dir=str(root / out), batch_size=4, lr=3e-3, report_to="none", num_workers=0,
                            log_every=2, **loop)
    return TransformerTrainConfig(config=str(root / "preset"), codes=str(root / "codes"), eval_codes=eval_codes,
                                  class_dropout=class_dropout, loop=loop)


def test_a_trained_prior_is_saved_with_its_loss_and_a_pipeline_that_generates(codes):
    result = train(config_for(codes, "run", max_steps=6, eval_codes=str(codes / "codes-heldout")))
    out = codes / "run"
    assert result.step == 6 and (out / "samples.png").is_file()
    model = FVQTransformer.from_pretrained(out / "transformer")
    # vocabulary, classes and grid come from the codes, not from the preset
    assert model.config.vocab_size == 256 and model.config.num_classes == 2 and model.config.class_names == ["a", "b"]
    measured = json.loads((out / "eval.json").read_text())[str(codes / "codes-heldout")]
    assert measured["num_tokens"] == 4 * 2 * 64 and measured["loss_unconditional"] != measured["loss"]
    assert "next-token loss" in (out / "transformer" / "README.md").read_text()
    pipe = FVQGenerationPipeline.from_pretrained(out / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a", "b"], generator=torch.Generator().manual_seed(0)).images
    assert [image.size for image in images] == [(32, 32), (32, 32)]
    assert "Trained with `fvq-train-transformer` for 6 steps" in (out / "pipeline" / "README.md").read_text()


def test_training_lowers_the_loss(codes):
    first = train(config_for(codes, "short", max_steps=1)).loss
    last = train(config_for(codes, "long", max_steps=30, class_dropout=0.0)).loss
    assert last < first - 1.0


@pytest.mark.parametrize("stop_after", [3, 4])  # 3 batches per epoch: at an epoch's end, and mid-epoch
def test_resume_is_exact(codes, stop_after):
    straight = train(config_for(codes, "straight", max_steps=6)).model
    train(config_for(codes, "resumed", max_steps=6, stop_after=stop_after))
    resumed = train(config_for(codes, "resumed", max_steps=6, resume=True))
    assert resumed.step == 6
    for a, b in zip(straight.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_tokenizer_config_is_not_a_transformer_config(codes, tmp_path):
    write_config(tmp_path / "tokenizer-config")
    with pytest.raises(ValueError, match="FVQModel config, not an FVQTransformer one"):
        main(["--config", str(tmp_path / "tokenizer-config"), "--codes", str(codes / "codes"), "--output-dir",
              str(tmp_path / "x"), "--report-to", "none", "--debug"])  # --debug: the exception itself


def test_init_weights_must_fit_the_codes(codes, tmp_path):
    FVQTransformer(**{**TINY_TRANSFORMER, "num_classes": 3}).save_pretrained(tmp_path / "pretrained")
    with pytest.raises(ValueError, match="do not fit the codes"):
        main(["--config", str(tmp_path / "pretrained"), "--init-weights", "--codes", str(codes / "codes"),
              "--output-dir", str(tmp_path / "x"), "--report-to", "none", "--debug"])


@pytest.mark.parametrize("flags, message", [(["--class-dropout", "1.0"], "class-dropout"),
                                            (["--batch-size", "0"], "batch-size")])
def test_bad_flags_are_refused_with_the_flag_named(flags, message):
    with pytest.raises(ValueError, match=message):
        build_config(["--config", "c", "--codes", "d", *flags])


def test_eval_codes_of_another_tokenizer_are_refused(codes, tmp_path):
    other = make_tiny_model(num_vq_embeddings=1024).eval()
    other.save_pretrained(tmp_path / "other-tok")
    extract_codes(str(tmp_path / "other-tok"), str(codes / "heldout"), tmp_path / "other-codes", num_workers=0)
    with pytest.raises(ValueError, match="extracted with another tokenizer"):
        train(config_for(codes, "mixed", max_steps=1, eval_codes=str(tmp_path / "other-codes")))
