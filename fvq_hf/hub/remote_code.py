"""Saved folders that diffusers' generic loaders can open: `diffusers.AutoModel.from_pretrained(folder,
trust_remote_code=True)` and `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`.

diffusers resolves third-party classes through a module file in the repository: `auto_map` in a model's
config.json, or `_class_name: [module, Class]` in a pipeline's model_index.json. That module only imports the
classes from the fvq-hf package, which must be installed; fvq-hf's own classes load such folders without
running any file from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REMOTE_MODULE = "fvq_hf_remote"
_SOURCE = '''"""Opens this repository with diffusers' generic loaders (trust_remote_code=True): the classes are fvq-hf's."""

try:
    from fvq_hf import FVQGenerationPipeline, FVQLatentPipeline, FVQModel, FVQPipeline, FVQTransformer
except ImportError as error:
    raise ImportError("This repository holds fvq-hf models: install the fvq-hf package first (pip install fvq-hf, "
                      "or pip install from its source repository).") from error

__all__ = ["FVQGenerationPipeline", "FVQLatentPipeline", "FVQModel", "FVQPipeline", "FVQTransformer"]
'''


def write_remote_module(folder: str | os.PathLike) -> None:
    Path(folder, f"{REMOTE_MODULE}.py").write_text(_SOURCE)


def add_auto_map(folder: str | os.PathLike, class_name: str) -> None:
    """Point `AutoModel` at `class_name` in the folder's config.json, and write the module file beside it."""
    path = Path(folder, "config.json")
    config = json.loads(path.read_text())
    config["auto_map"] = {"AutoModel": f"{REMOTE_MODULE}.{class_name}"}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_remote_module(folder)


def add_pipeline_class_module(folder: str | os.PathLike) -> None:
    """Name the pipeline class and every component as `[module, Class]` of the module file in model_index.json (the
    components' own folders hold the file, written by their `save_pretrained`), and write the file beside it."""
    path = Path(folder, "model_index.json")
    index = json.loads(path.read_text())
    index["_class_name"] = [REMOTE_MODULE, index["_class_name"]]
    for name, entry in index.items():
        if isinstance(entry, list) and len(entry) == 2 and Path(folder, name, f"{REMOTE_MODULE}.py").is_file():
            index[name] = [REMOTE_MODULE, entry[1]]
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_remote_module(folder)


def without_remote_module(config: dict, modules: dict[str, str]) -> dict:
    """A model_index config read as fvq-hf's own classes would write it without the module file: the pipeline's
    `_class_name` as a plain name, and each component's module as `modules[class name]`."""
    config = dict(config)
    for key, entry in config.items():
        if isinstance(entry, list | tuple) and len(entry) == 2 and entry[0] == REMOTE_MODULE:
            config[key] = entry[1] if key == "_class_name" else [modules.get(entry[1], entry[0]), entry[1]]
    return config
