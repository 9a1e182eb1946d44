"""diffusers' generic loaders open every folder fvq-hf writes: `AutoModel.from_pretrained` (models) and
`DiffusionPipeline.from_pretrained` (pipelines), with `trust_remote_code=True`; fvq-hf's own classes need neither."""

import json
import textwrap

import pytest
import torch
from diffusers import AutoModel, DiffusionPipeline
from huggingface_hub import snapshot_download

from fvq_hf import FVQGenerationPipeline, FVQModel, FVQPipeline, FVQTransformer
from fvq_hf.hub.remote_code import REMOTE_MODULE

from ..helpers import fill_cache, make_tiny_model, make_tiny_transformer, perturb_bridge, push_in_a_subprocess


def tokenizer():
    model = make_tiny_model()
    perturb_bridge(model)
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    """Every kind of folder: tokenizer, transformer, tokenizer pipeline, generation pipeline."""
    tokenizer().save_pretrained(tmp_path / "model")
    make_tiny_transformer().save_pretrained(tmp_path / "gpt")
    FVQPipeline(vq=tokenizer()).save_pretrained(tmp_path / "pipe")
    FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=tokenizer()).save_pretrained(tmp_path / "gen")
    return tmp_path


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_saved_folders_name_their_module(saved):
    assert json.loads((saved / "model" / "config.json").read_text())["auto_map"] == {
        "AutoModel": f"{REMOTE_MODULE}.FVQModel"}
    assert json.loads((saved / "pipe" / "model_index.json").read_text())["_class_name"] == [REMOTE_MODULE, "FVQPipeline"]
    for folder in ("model", "gpt", "pipe", "pipe/vq", "gen", "gen/transformer"):
        assert (saved / folder / f"{REMOTE_MODULE}.py").is_file(), folder


def test_automodel_and_diffusion_pipeline_load_local_folders(saved):
    model = AutoModel.from_pretrained(str(saved / "model"), trust_remote_code=True)
    assert type(model) is FVQModel and same_weights(model, tokenizer())
    assert type(AutoModel.from_pretrained(str(saved / "gpt"), trust_remote_code=True)) is FVQTransformer
    pipe = DiffusionPipeline.from_pretrained(str(saved / "pipe"), trust_remote_code=True)
    assert type(pipe) is FVQPipeline and same_weights(pipe.vq, tokenizer())
    gen = DiffusionPipeline.from_pretrained(str(saved / "gen"), trust_remote_code=True)
    assert type(gen) is FVQGenerationPipeline and type(gen.transformer) is FVQTransformer


def test_own_classes_run_no_file_of_the_folder(saved):
    (saved / "pipe" / f"{REMOTE_MODULE}.py").write_text("raise RuntimeError('this file must not run')\n")
    assert type(FVQPipeline.from_pretrained(saved / "pipe")) is FVQPipeline
    (saved / "model" / f"{REMOTE_MODULE}.py").write_text("raise RuntimeError('this file must not run')\n")
    assert type(FVQModel.from_pretrained(saved / "model")) is FVQModel


def test_generic_loaders_ask_for_trust_remote_code(saved):
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(str(saved / "pipe"))


def test_generic_loaders_work_offline_from_the_cache_snapshot(saved, tmp_path):
    """diffusers' dynamic modules look the commit up online for a hub id, so offline the cached snapshot is given
    as a folder (README shows the line)."""
    cache = tmp_path / "cache"
    fill_cache(cache, "org/fvq-pipe", saved / "pipe")
    fill_cache(cache, "org/fvq-model", saved / "model")
    folder = snapshot_download("org/fvq-pipe", cache_dir=cache, local_files_only=True)
    assert type(DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)) is FVQPipeline
    folder = snapshot_download("org/fvq-model", cache_dir=cache, local_files_only=True)
    assert type(AutoModel.from_pretrained(folder, trust_remote_code=True)) is FVQModel


GENERIC_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[2])
    from diffusers import AutoModel, DiffusionPipeline
    from tests.helpers import make_tiny_model, make_tiny_transformer
    from fvq_hf import FVQGenerationPipeline, FVQPipeline

    make_tiny_model().push_to_hub("org/fvq-tiny")
    make_tiny_transformer().push_to_hub("org/gpt-tiny")
    FVQPipeline(vq=make_tiny_model().eval()).push_to_hub("org/fvq-tiny-pipeline")
    FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=make_tiny_model().eval()).push_to_hub("org/gen")
    kw = dict(trust_remote_code=True, cache_dir=sys.argv[1])
    print(json.dumps([type(AutoModel.from_pretrained("org/fvq-tiny", **kw)).__name__,
                      type(AutoModel.from_pretrained("org/gpt-tiny", **kw)).__name__,
                      type(DiffusionPipeline.from_pretrained("org/fvq-tiny-pipeline", **kw)).__name__,
                      type(DiffusionPipeline.from_pretrained("org/gen", **kw)).__name__]))
""")


@pytest.mark.slow
def test_generic_loaders_load_by_hub_id_from_a_loopback_hub(tmp_path):
    """Pushed with push_to_hub, loaded by hub id through diffusers' generic loaders (a local server speaking the
    Hub's protocol, not the real Hub)."""
    result, files = push_in_a_subprocess(GENERIC_SCRIPT, tmp_path)
    assert result == ["FVQModel", "FVQTransformer", "FVQPipeline", "FVQGenerationPipeline"]
    assert f"{REMOTE_MODULE}.py" in files["org/fvq-tiny-pipeline"]
