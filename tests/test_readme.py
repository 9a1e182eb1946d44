"""Every Python block of the README runs as written (from the repository root)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block(index, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hub_configs").symlink_to(ROOT / "hub_configs")
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})


def test_readme_names_the_commands_that_exist():
    text = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0" in text and "python -m pytest -q" in text
    for config in re.findall(r"hub_configs/([\w-]+)", text):
        assert (ROOT / "hub_configs" / config / "config.json").exists(), config
