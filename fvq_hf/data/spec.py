"""The `--data` value of every command, parsed once into a `DataSpec`; its readers are `sources.open_source`
(map-style data) and `streams.open_stream` (streamed data). Torch-free: model cards read it too.

| `--data`                           | kind      | `name`                   | `split`                            |
| ---------------------------------- | --------- | ------------------------ | ---------------------------------- |
| `builtin[:train|heldout|unseen]`   | `builtin` | `builtin`                | the builtin split (default train)  |
| `hf:NAME[:SPLIT]`                  | `hub`     | the dataset id           | SPLIT, or None (the caller's)      |
| `shards/{000..099}.tar`            | `shards`  | the brace pattern        | None                               |
| any other text                     | `path`    | the path: an image folder or a `save_to_disk` dataset, told apart when opened |

`streaming` (`--streaming`) reads a `hub` dataset as a stream; tar shards are always streamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BUILTIN_SPLITS = ("train", "heldout", "unseen")
Kind = Literal["builtin", "hub", "shards", "path"]


@dataclass(frozen=True)
class DataSpec:
    """A parsed `--data` value (see the module docstring); `str(spec)` gives back the text it was parsed from."""

    text: str
    kind: Kind
    name: str
    split: str | None = None
    streaming: bool = False

    @classmethod
    def parse(cls, data: str | DataSpec, streaming: bool = False) -> DataSpec:
        """`data` as a `DataSpec` (one already parsed is returned as is, streamed if either says so); a ValueError
        names what does not parse."""
        if isinstance(data, DataSpec):
            return data if data.streaming or not streaming else cls.parse(data.text, streaming=True)
        if not isinstance(data, str) or not data.strip():
            raise ValueError(f"--data must name a data source, got {data!r}.")
        if data == "builtin" or data.startswith("builtin:"):
            split = data.partition(":")[2] or "train"
            if split not in BUILTIN_SPLITS:
                raise ValueError(f"Unknown builtin split {split!r}; use builtin:train, builtin:heldout or "
                                 "builtin:unseen.")
            spec = cls(data, "builtin", "builtin", split)
        elif data.startswith("hf:"):
            name, _, split = data[3:].partition(":")
            if not name:
                raise ValueError(f"--data {data!r} names no dataset: use hf:<name>[:<split>].")
            spec = cls(data, "hub", name, split or None)
        elif data.endswith(".tar"):
            spec = cls(data, "shards", data)
        else:
            spec = cls(data, "path", data)
        if streaming and spec.kind not in ("hub", "shards"):
            raise ValueError(f"--streaming reads hf:<name> or tar shards ('shards/{{000..099}}.tar'), not {data!r}.")
        return cls(spec.text, spec.kind, spec.name, spec.split, streaming or spec.kind == "shards")

    def __str__(self) -> str:
        return self.text

    @property
    def is_builtin(self) -> bool:
        return self.kind == "builtin"

    @property
    def hub_dataset(self) -> str | None:
        """The Hub dataset id of an `hf:` source (for model-card metadata), else None."""
        return self.name if self.kind == "hub" else None

    @property
    def dataset_type(self) -> str:
        """What the data is, as a model-index dataset type: the Hub id, `scikit-image-data` (the builtin photos,
        not a Hub dataset), `webdataset` or `imagefolder`."""
        return {"builtin": "scikit-image-data", "hub": self.name, "shards": "webdataset"}.get(self.kind, "imagefolder")
