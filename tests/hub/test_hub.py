"""Hub ids: offline loading from a cache in the Hub's own layout, and pushes against a loopback Hub."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.pipelines import FVQPipeline

from ..helpers import ROOT, fill_cache, make_tiny_model, make_tiny_transformer, push_in_a_subprocess
from ..hub_server import HubServer


@pytest.fixture
def cached(tmp_path):
    """A tiny model and a pipeline around it, saved and placed in a temporary Hub cache."""
    model = make_tiny_model().eval()
    model.save_pretrained(tmp_path / "model")
    FVQPipeline(vq=model).save_pretrained(tmp_path / "pipe")
    cache = tmp_path / "cache"
    fill_cache(cache, "org/fvq-tiny", tmp_path / "model")
    fill_cache(cache, "org/fvq-tiny-pipeline", tmp_path / "pipe")
    fill_cache(cache, "org/fvq-tiny-pipeline", tmp_path / "pipe", commit="f" * 40, ref="v1")
    fill_cache(cache, "org/fvq-nested", tmp_path / "pipe")
    return model, cache


def test_a_model_loads_by_hub_id_offline(cached):
    model, cache = cached
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    loaded = FVQModel.from_pretrained("org/fvq-tiny", cache_dir=cache)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    sub = FVQModel.from_pretrained("org/fvq-nested", subfolder="vq", cache_dir=cache, torch_dtype=torch.bfloat16)
    assert sub.dtype == torch.bfloat16


def test_a_pipeline_loads_by_hub_id_offline_at_a_revision(cached):
    model, cache = cached
    pipe = FVQPipeline.from_pretrained("org/fvq-tiny-pipeline", cache_dir=cache)
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(pipe(images, output_type="pt").indices, model.tokenize(images))
    tagged = FVQPipeline.from_pretrained("org/fvq-tiny-pipeline", cache_dir=cache, revision="v1")
    assert "f" * 40 in str(tagged.vq.config._name_or_path)  # the tag's snapshot, not main's
    assert torch.equal(tagged(images, output_type="pt").indices, model.tokenize(images))


def test_a_hub_id_missing_from_the_offline_cache_says_so(cached):
    _, cache = cached
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set, and it is not in the local cache"):
        FVQModel.from_pretrained("org/not-there", cache_dir=cache)


PUSH_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[2])
    from tests.helpers import make_tiny_model
    from fvq_hf import FVQModel
    from fvq_hf.pipelines import FVQPipeline

    model = make_tiny_model().eval()
    model.push_to_hub("org/fvq-tiny", evaluations={"builtin:heldout": {"usage": 0.75, "num_tokens": 4096,
                                                                      "psnr": 21.5, "ssim": 0.6}})
    FVQPipeline(vq=model).push_to_hub("org/fvq-tiny-pipeline")
    loaded = FVQModel.from_pretrained("org/fvq-tiny", cache_dir=sys.argv[1])
    pipe = FVQPipeline.from_pretrained("org/fvq-tiny-pipeline", cache_dir=sys.argv[1])
    same = all(bool((a == b).all()) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    print(json.dumps({"same_weights": same, "pipeline_vq": type(pipe.vq).__name__}))
""")

GENERATOR_PUSH_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import torch
    from tests.helpers import make_tiny_model, make_tiny_transformer
    from fvq_hf import FVQGenerationPipeline, FVQTransformer

    transformer = make_tiny_transformer()
    transformer.push_to_hub("org/gpt-tiny", evaluations={"held-out": {"loss": 4.25, "num_tokens": 640}})
    pipe = FVQGenerationPipeline(transformer=transformer, vq=make_tiny_model().eval())
    pipe.push_to_hub("org/gpt-tiny-pipeline")
    loaded = FVQTransformer.from_pretrained("org/gpt-tiny", cache_dir=sys.argv[1])
    again = FVQGenerationPipeline.from_pretrained("org/gpt-tiny-pipeline", cache_dir=sys.argv[1])
    sample = lambda p: p([0, 2], generator=torch.Generator().manual_seed(0), output_type="pt").indices
    same = all(bool((a == b).all()) for a, b in zip(transformer.state_dict().values(), loaded.state_dict().values()))
    print(json.dumps({"same_weights": same, "same_samples": bool((sample(pipe) == sample(again)).all())}))
""")

LATENT_PUSH_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import torch
    from diffusers import DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from tests.helpers import make_tiny_model
    from fvq_hf import FVQLatentPipeline

    vq = make_tiny_model().eval()
    vq.register_to_config(scaling_factor=0.4375)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=8,
                                num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=3)
    pipe = FVQLatentPipeline(transformer=dit, scheduler=FlowMatchEulerDiscreteScheduler(), vq=vq,
                             class_names=["red", "green", "blue"])
    pipe.push_to_hub("org/latent-tiny-pipeline")
    again = FVQLatentPipeline.from_pretrained("org/latent-tiny-pipeline", cache_dir=sys.argv[1])
    sample = lambda p: p([0, 2], num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                         output_type="pt").images
    print(json.dumps({"same_samples": bool((sample(pipe) == sample(again)).all()),
                      "scaling_factor": again.vq.config.scaling_factor}))
""")


@pytest.mark.slow
def test_push_a_latent_generator_to_a_loopback_hub_and_load_back(tmp_path):
    result, files = push_in_a_subprocess(LATENT_PUSH_SCRIPT, tmp_path)
    assert result == {"same_samples": True, "scaling_factor": 0.4375}
    pipe_files = files["org/latent-tiny-pipeline"]
    assert {"model_index.json", "transformer/config.json", "scheduler/scheduler_config.json",
            "vq/diffusion_pytorch_model.safetensors", "README.md"} <= set(pipe_files)
    card = pipe_files["README.md"].decode()
    assert "scaling factor 0.4375" in card and "FlowMatchEulerDiscreteScheduler (`euler`)" in card
    assert "DiTTransformer2DModel: 1 layers" in card and "red, green, blue" in card
    assert 'FVQLatentPipeline.from_pretrained("org/latent-tiny-pipeline")' in card


@pytest.mark.slow
def test_push_to_a_loopback_hub_and_load_back(tmp_path):
    """Against a local server speaking the Hub's protocol (not the real Hub): what is uploaded, and that it loads."""
    result, files = push_in_a_subprocess(PUSH_SCRIPT, tmp_path)
    model_files, pipe_files = files["org/fvq-tiny"], files["org/fvq-tiny-pipeline"]
    assert result == {"same_weights": True, "pipeline_vq": "FVQModel"}
    assert set(model_files) == {"README.md", "config.json", "diffusion_pytorch_model.safetensors", "fvq_hf_remote.py"}
    assert set(pipe_files) == {"README.md", "model_index.json", "vq/config.json", "vq/diffusion_pytorch_model.safetensors",
                               "fvq_hf_remote.py", "vq/fvq_hf_remote.py"}
    card = model_files["README.md"].decode()
    assert "library_name: fvq-hf" in card and "pipeline_tag: image-to-image" in card and "vqbridge" in card
    assert "75.00%" in card and "21.5000" in card and 'FVQModel.from_pretrained("org/fvq-tiny")' in card
    assert 'FVQPipeline.from_pretrained("org/fvq-tiny-pipeline")' in pipe_files["README.md"].decode()
    assert json.loads(model_files["config.json"])["num_vq_embeddings"] == 256


@pytest.mark.slow
def test_push_a_generator_to_a_loopback_hub_and_load_back(tmp_path):
    result, files = push_in_a_subprocess(GENERATOR_PUSH_SCRIPT, tmp_path)
    model_files, pipe_files = files["org/gpt-tiny"], files["org/gpt-tiny-pipeline"]
    assert result == {"same_weights": True, "same_samples": True}
    assert set(model_files) == {"README.md", "config.json", "diffusion_pytorch_model.safetensors", "fvq_hf_remote.py"}
    assert set(pipe_files) == {"README.md", "model_index.json", "transformer/config.json",
                               "transformer/diffusion_pytorch_model.safetensors", "vq/config.json",
                               "vq/diffusion_pytorch_model.safetensors", "fvq_hf_remote.py",
                               "transformer/fvq_hf_remote.py", "vq/fvq_hf_remote.py"}
    card = model_files["README.md"].decode()
    assert "library_name: fvq-hf" in card and "autoregressive" in card and "4.2500" in card
    assert "red, green, blue" in card and 'FVQTransformer.from_pretrained("org/gpt-tiny")' in card
    assert 'FVQGenerationPipeline.from_pretrained("org/gpt-tiny-pipeline")' in pipe_files["README.md"].decode()


@pytest.mark.skipif(not (os.environ.get("HF_TOKEN") and os.environ.get("FVQ_TEST_HUB_NAMESPACE")),
                    reason="real-Hub test: set HF_TOKEN, FVQ_TEST_HUB_NAMESPACE and HF_HUB_OFFLINE=0 (online)")
def test_push_to_the_real_hub():
    import huggingface_hub

    repo_id = f"{os.environ['FVQ_TEST_HUB_NAMESPACE']}/fvq-hf-test-{os.getpid()}"
    model = make_tiny_model().eval()
    try:
        model.push_to_hub(repo_id, private=True)
        loaded = FVQModel.from_pretrained(repo_id)
        assert loaded.config.num_vq_embeddings == 256
    finally:
        huggingface_hub.delete_repo(repo_id, missing_ok=True)


PUBLISH_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from fvq_hf import FVQModel, FVQTransformer
    from fvq_hf.cli.publish import main

    root = Path(sys.argv[2])
    trained = FVQModel.from_config(FVQModel.load_config(root / "hub_configs" / "fvq-cpu-4k"))
    trained.save_pretrained(sys.argv[1] + "/trained")
    # a transformer trained on other data: its classes come from the codes, not from the preset
    gpt = FVQTransformer.from_config({**FVQTransformer.load_config(root / "hub_configs" / "fvq-gpt-cpu"),
                                      "num_classes": 2, "class_names": ["a", "b"]})
    gpt.save_pretrained(sys.argv[1] + "/gpt")
    main(["--namespace", "pub", "--configs", str(root / "hub_configs"), "--weights",
          "fvq-cpu-4k=" + sys.argv[1] + "/trained", "fvq-gpt-cpu=" + sys.argv[1] + "/gpt", "--pipeline"])
    print(json.dumps(FVQModel.load_config("pub/fvq-262k", cache_dir=sys.argv[1] + "/cache")["num_vq_embeddings"]))
""")


@pytest.mark.slow
def test_publish_hub_configs_to_a_loopback_hub(tmp_path):
    (tmp_path / "publish.py").write_text(PUBLISH_SCRIPT)
    root = ROOT
    with HubServer() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "test-token",
               "HF_HUB_OFFLINE": "0"}
        proc = subprocess.run([sys.executable, str(tmp_path / "publish.py"), str(tmp_path), str(root)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        repos = {repo_id: hub.files(repo_id) for repo_id in hub.repos}
    variants = sorted(p.name for p in (root / "hub_configs").iterdir() if (p / "config.json").is_file())
    assert set(repos) == {f"pub/{v}" for v in variants} | {"pub/fvq-cpu-4k-pipeline"}
    assert set(repos["pub/fvq-262k"]) == {"config.json", "README.md"}
    assert "diffusion_pytorch_model.safetensors" in repos["pub/fvq-cpu-4k"]
    assert "diffusion_pytorch_model.safetensors" in repos["pub/fvq-gpt-cpu"]
    assert "vq/diffusion_pytorch_model.safetensors" in repos["pub/fvq-cpu-4k-pipeline"]
    assert proc.stdout.strip().splitlines()[-1] == "262144"


def test_publish_refuses_weights_of_another_variant(tmp_path):
    from fvq_hf.publishing import publish

    make_tiny_model().save_pretrained(tmp_path / "tiny")
    root = ROOT / "hub_configs"
    with pytest.raises(ValueError, match="do not match hub_configs/fvq-cpu-4k"):
        publish("pub", root, only=["fvq-cpu-4k"], weights={"fvq-cpu-4k": str(tmp_path / "tiny")})
    make_tiny_transformer().save_pretrained(tmp_path / "gpt")
    with pytest.raises(ValueError, match="do not match hub_configs/fvq-gpt-cpu: .*hidden_size: config 128 vs weights 32"):
        publish("pub", root, only=["fvq-gpt-cpu"], weights={"fvq-gpt-cpu": str(tmp_path / "gpt")})
    with pytest.raises(ValueError, match="No hub config named"):
        publish("pub", root, only=["fvq-1m"])


CONVERTED_PUSH_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    import torch
    from tests.helpers import original_file
    from fvq_hf import FVQModel, FVQPipeline
    from fvq_hf.cli.convert import main as convert
    from fvq_hf.cli.publish import main as publish

    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    path, tensors = original_file("llamagen_vq8", work)
    path = path.rename(work / "vq_ds8_c2i.pt")
    convert([str(path), "--output", str(work / "converted")])
    publish(["--converted", str(work / "converted"), "--repo-id", "org/llamagen-vq8", "--pipeline"])
    loaded = FVQModel.from_pretrained("org/llamagen-vq8", cache_dir=work / "cache")
    pipe = FVQPipeline.from_pretrained("org/llamagen-vq8-pipeline", cache_dir=work / "cache")
    with torch.no_grad():
        same = bool((loaded.tokenize(tensors["inputs"]) == tensors["expected_indices"]).all())
    print(json.dumps({"original_ids": same, "pipeline_vq": type(pipe.vq).__name__}))
""")


@pytest.mark.slow
def test_publish_a_converted_original_to_a_loopback_hub(tmp_path):
    result, files = push_in_a_subprocess(CONVERTED_PUSH_SCRIPT, tmp_path)
    assert result == {"original_ids": True, "pipeline_vq": "FVQModel"}
    card = files["org/llamagen-vq8"]["README.md"].decode()
    assert "license: mit" in card and "base_model: FoundationVision/LlamaGen" in card
    assert "vq_ds8_c2i.pt" in card and "rFID 0.59" in card and "not measured here" in card
    assert "Where the weights come from" in files["org/llamagen-vq8-pipeline"]["README.md"].decode()
