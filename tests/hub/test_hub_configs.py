import argparse
import inspect
import json

import pytest
import torch

from fvq_hf import FVQModel, FVQTransformer

from ..helpers import FIXTURES, ROOT

# Model configs (config.json); the latent generator presets (transformer/ or unet/ and scheduler/) are tested in
# tests/training/test_latent_trainer.py.
HUB_CONFIGS = sorted(p for p in (ROOT / "hub_configs").iterdir() if (p / "config.json").is_file())
LATENT_PRESETS = sorted(p for p in (ROOT / "hub_configs").iterdir() if (p / "scheduler").is_dir())
CLASSES = {"FVQModel": FVQModel, "FVQTransformer": FVQTransformer}
TOKENIZERS = [p for p in HUB_CONFIGS if json.loads((p / "config.json").read_text())["_class_name"] == "FVQModel"]
PUBLISHED = {"fvq-16k": (16384, 4), "fvq-65k": (65536, 8), "fvq-262k": (262144, 8)}
TRANSFORMERS = {"fvq-gpt-cpu": (128, 4), "fvq-gpt-b": (768, 12), "fvq-gpt-l": (1024, 24)}
# The authors' training recipes (their DiT QBridge): K, QB_type, quantizer type, code dim.
RECIPES = {"fvq-dit-16k": (16384, "QBridge-L/4", "vq", 256), "fvq-dit-65k": (65536, "QBridge-L/8", "vq", 256),
           "fvq-dit-262k": (262144, "QBridge-L/8", "vq", 256), "fvq-rq-dit-16k": (16384, "QBridge-S/4", "residual", 8),
           "fvq-var-dit-16k": (16384, "QBridge-S/4", "multiscale", 8)}

# VQGAN-LC's released tokenizers: K, code dim, downsample factor, attention levels (None: the lowest, f16; none at f8).
LC_RELEASES = {"vqgan-lc-100k-f16": (100000, 8, 16, None), "vqgan-lc-100k-f8": (100000, 4, 8, ()),
               "vqgan-lc-16k-f16": (16384, 8, 16, None)}


def test_every_folder_is_a_model_config_or_a_latent_generator_preset():
    folders = {p for p in (ROOT / "hub_configs").iterdir() if p.is_dir()}
    assert folders == set(HUB_CONFIGS) | set(LATENT_PRESETS) and not set(HUB_CONFIGS) & set(LATENT_PRESETS)
    for folder in LATENT_PRESETS:
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and "library_name: fvq-hf" in card and folder.name in card


def test_published_variants_are_present():
    assert set(PUBLISHED) | set(TRANSFORMERS) | set(RECIPES) | set(LC_RELEASES) <= {p.name for p in HUB_CONFIGS}


@pytest.mark.parametrize("folder", HUB_CONFIGS, ids=lambda p: p.name)
def test_every_folder_has_a_config_and_a_card(folder):
    config = FVQModel.load_config(folder)
    cls = CLASSES[config["_class_name"]]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: fvq-hf" in card and folder.name in card
    # Every key is a constructor argument: nothing in a hub config is silently ignored.
    init_keys = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert {k for k in config if not k.startswith("_")} == init_keys


@pytest.mark.parametrize("folder", [p for p in TOKENIZERS if p.name not in {*PUBLISHED, *RECIPES, *LC_RELEASES}],
                         ids=lambda p: p.name)
def test_small_configs_build_and_run(folder):
    model = FVQModel.from_config(FVQModel.load_config(folder)).eval()
    size = model.config.sample_size
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size))
    assert out.sample.shape == (1, 3, size, size)


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_variants_build_on_a_cpu(name):
    codebook_size, patch = PUBLISHED[name]
    model = FVQModel.from_config(FVQModel.load_config(ROOT / "hub_configs" / name))
    assert model.codebook_size == codebook_size and model.quantizer.bridge.config.patch_size == patch
    assert model.config.block_out_channels == (128, 128, 256, 256, 512) and model.downsample_factor == 16
    assert model.config.vq_embed_dim == 256 and not model.config.codebook_l2_norm
    bridge_params = sum(p.numel() for p in model.quantizer.bridge.parameters())
    assert bridge_params == {4: 3_153_664, 8: 9_457_408}[patch]


@pytest.mark.parametrize("name", RECIPES)
def test_the_authors_recipes_are_their_sizes(name):
    from fvq_hf.bridges import qbridge_config

    codebook_size, qb_type, quantizer_type, code_dim = RECIPES[name]
    config = FVQModel.load_config(ROOT / "hub_configs" / name)
    assert (config["num_vq_embeddings"], config["quantizer_type"], config["vq_embed_dim"]) == (
        codebook_size, quantizer_type, code_dim)
    assert config["bridge_type"] == "dit" and config["bridge_config"] == {**qbridge_config(qb_type), "label": 0}
    assert config["table_init"] == ("normal" if quantizer_type == "multiscale" else "auto")
    card = (ROOT / "hub_configs" / name / "README.md").read_text()
    assert "vq_train_qbridge_lr" in card and f"--config hub_configs/{name}" in card


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_presets_have_their_width_depth_and_size(name):
    folder = ROOT / "hub_configs" / name
    width, depth = TRANSFORMERS[name]
    with torch.device("meta"):
        model = FVQTransformer.from_config(FVQTransformer.load_config(folder))
    assert (model.config.hidden_size, model.config.num_layers) == (width, depth)
    assert f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters" in (folder / "README.md").read_text()


def test_the_cpu_transformer_fits_the_cpu_tokenizer():
    root = ROOT / "hub_configs"
    tokenizer = FVQModel.load_config(root / "fvq-cpu-4k")
    transformer = FVQTransformer.load_config(root / "fvq-gpt-cpu")
    grid = tokenizer["sample_size"] // 2 ** (len(tokenizer["block_out_channels"]) - 1)
    assert transformer["vocab_size"] == tokenizer["num_vq_embeddings"] and transformer["token_grid_size"] == [grid, grid]


def their_release(name: str) -> dict:
    """VQGAN-LC's checkpoint of a release as their code lays it out (`vqgan_lc_recipe.json`, made by
    `benchmarks/authors_vqgan_lc_step.py` from their full-size `VQModel`): meta tensors of their shapes, their args."""
    release = json.loads((FIXTURES / "vqgan_lc_recipe.json").read_text())["releases"][name]
    state = {key: torch.empty(shape, device="meta") for key, shape in release["shapes"].items()}
    return {"state_dict": state, "opt_ae": {}, "opt_dist": {}, "epoch": 19, "args": argparse.Namespace(**release["args"])}


@pytest.mark.parametrize("name", LC_RELEASES)
def test_vqgan_lc_presets_are_their_converted_checkpoints(name):
    """`fvq-convert --keep-bridge` of their checkpoint gives exactly the preset's config (shapes only: built on the
    meta device), and the preset builds: a frozen (K, 768) table under their Linear(768, d)."""
    from fvq_hf.conversion.loader import convert_original

    with torch.device("meta"):
        converted, info = convert_original(their_release(name), name, model_class=FVQModel, keep_bridge=True)
        preset = FVQModel.from_config(FVQModel.load_config(ROOT / "hub_configs" / name))

    def saved(config) -> dict:  # what save_pretrained writes, less diffusers' bookkeeping
        return {k: v for k, v in json.loads(json.dumps(dict(config))).items() if not k.startswith("_")}

    assert saved(converted.config) == saved(preset.config)
    assert {k for k in info.dropped_keys} and all(k.startswith(("discriminator.", "perceptual_loss."))
                                                  for k in info.dropped_keys)
    codebook_size, code_dim, downsample, attention = LC_RELEASES[name]
    assert (preset.codebook_size, preset.config.vq_embed_dim, preset.downsample_factor) == (codebook_size, code_dim,
                                                                                             downsample)
    assert preset.config.attention_levels == attention and preset.config.bridge_type == "lc-linear"
    assert tuple(preset.quantizer.embedding.weight.shape) == (codebook_size, 768)
    assert not preset.quantizer.embedding.weight.requires_grad
    assert tuple(preset.quantizer.bridge.projection.weight.shape) == (code_dim, 768)
    assert (preset.config.commitment_weight, preset.config.codebook_weight) == (0.1, 0.033)
    card = (ROOT / "hub_configs" / name / "README.md").read_text()
    assert "training_vqgan.py" in card and f"--config hub_configs/{name}" in card and "--init-table" in card


@pytest.mark.slow
def test_a_vqgan_lc_preset_builds_and_runs_on_a_cpu():
    model = FVQModel.from_config(FVQModel.load_config(ROOT / "hub_configs" / "vqgan-lc-16k-f16")).eval()
    with torch.no_grad():
        ids = model.tokenize(torch.zeros(1, 3, 32, 32))
        assert ids.shape == (1, 2, 2) and model.detokenize(ids).shape == (1, 3, 32, 32)
