"""Every Python block of the README runs as written (from the repository root)."""

import re

import pytest

from .helpers import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


# The README's released files, stood in for by the parity fixtures (small, made with the original code) in an
# offline Hub cache: the lines run as written, by hub id, without the network.
RELEASES = {("FoundationVision/LlamaGen", "vq_ds16_c2i.pt"): "llamagen_vq16",
            ("yfChang/FVQ", "fullvq2vqgan_ds16_res2_16384_256.pt"): "fvq_fold_vqgan"}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block(index, monkeypatch, tmp_path):
    import huggingface_hub.constants

    from .helpers import fill_cache, original_file

    for (repo_id, filename), fixture in RELEASES.items():
        folder = tmp_path / "releases" / repo_id
        folder.mkdir(parents=True)
        original_file(fixture, folder)[0].rename(folder / filename)
        fill_cache(tmp_path / "hub-cache", repo_id, folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hub_configs").symlink_to(ROOT / "hub_configs")
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})


def test_readme_names_the_commands_that_exist():
    text = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0" in text and "python -m pytest -q" in text
    for config in re.findall(r"hub_configs/([\w-]+)", text):
        folder = ROOT / "hub_configs" / config  # a model config, or a latent generator's (transformer/ or unet/)
        assert any((folder / sub / "config.json").exists() for sub in ("", "transformer", "unet")), config
