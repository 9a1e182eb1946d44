"""Map-style image sources for training and evaluation, the reader of a parsed `--data` (`spec.DataSpec`):
- `builtin` / `builtin:train`: the natural photos that ship inside scikit-image (no download), without
  their held-out bottom strips;
- `builtin:heldout`: the bottom `HELDOUT_FRACTION` of those same photos, never trained on (the training
  distribution, unseen pixels);
- `builtin:unseen`: photos that training never sees at all (a different distribution);
- a folder of image files (searched recursively);
- a `datasets` dataset: a folder written by `Dataset.save_to_disk`, or `hf:<name>[:<split>]` from the Hub
  or its local cache.
Streamed data (`--streaming`, tar shards) is read by `streams`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .image_io import IMAGE_EXTENSIONS, ImageReadError, load_image, pil_to_tensor, resize_center_crop, to_rgb
from .spec import DataSpec

logger = logging.getLogger(__name__)

# scikit-image's bundled photos. Grayscale ones are used as RGB. `cat` is the same photo as `chelsea`.
BUILTIN_TRAIN = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "camera",
                 "coins", "moon", "grass", "gravel", "brick", "clock", "page", "text")
BUILTIN_UNSEEN = ("coffee", "rocket", "motorcycle_right")
HELDOUT_FRACTION = 0.2


def _skimage_photo(name: str) -> Image.Image:
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("The builtin photos come from scikit-image: pip install 'fvq-hf[train]'.") from error
    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        array = left if name.endswith("left") else right
    else:
        array = getattr(data, name)()
    if array.dtype != np.uint8:
        array = (array * 255).astype(np.uint8) if array.dtype == np.bool_ else array.astype(np.uint8)
    return to_rgb(Image.fromarray(array))


def builtin_photos(split: str = "train") -> list[tuple[str, Image.Image]]:
    """`(name, RGB image)` pairs of the builtin set: "train", "heldout" or "unseen" (see module docstring)."""
    if split == "unseen":
        return [(name, _skimage_photo(name)) for name in BUILTIN_UNSEEN]
    if split not in ("train", "heldout"):
        raise ValueError(f"Unknown builtin split {split!r}; use builtin:train, builtin:heldout or builtin:unseen.")
    photos = []
    for name in BUILTIN_TRAIN:
        image = _skimage_photo(name)
        cut = image.height - round(image.height * HELDOUT_FRACTION)
        box = (0, 0, image.width, cut) if split == "train" else (0, cut, image.width, image.height)
        photos.append((f"{name}:{split}", image.crop(box)))
    return photos


class ImageFolder:
    """The image files under a folder (recursively, sorted); unreadable files are logged by name and skipped."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Data folder {self.root} does not exist.")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.paths:
            raise ValueError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}.")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        return load_image(self.paths[index])


class HFImageDataset:
    """Images of a `datasets` dataset's image column (PIL images, or paths/bytes decoded by `datasets`)."""

    def __init__(self, name_or_path: str, split: str = "train", image_column: str | None = None) -> None:
        try:
            import datasets
        except ImportError as error:
            raise ImportError("Hugging Face datasets need `pip install datasets` (in fvq-hf[train]).") from error
        path = Path(name_or_path)
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            dataset = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            dataset = datasets.load_dataset(name_or_path, split=split)
        columns = [c for c, f in dataset.features.items() if isinstance(f, datasets.Image)]
        column = image_column or (columns[0] if columns else None)
        if column is None or column not in dataset.column_names:
            raise ValueError(f"Dataset {name_or_path} has no image column {image_column or ''} "
                             f"(columns: {dataset.column_names}); pass --image-column.")
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Image.Image:
        return to_rgb(self.dataset[index][self.column])


class PhotoList:
    """A fixed list of in-memory images, sharing the interface of `ImageFolder`."""

    def __init__(self, photos: Sequence[tuple[str, Image.Image]]) -> None:
        self.names = [name for name, _ in photos]
        self.images = [image for _, image in photos]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Image.Image:
        return self.images[index]


def open_source(data: str | DataSpec, split: str = "train", image_column: str | None = None):
    """A `--data` value (text or parsed) -> an indexable source of RGB PIL images (see the module docstring);
    `split` is the split of a `datasets` dataset whose `hf:NAME[:SPLIT]` names none."""
    spec = DataSpec.parse(data)
    if spec.streaming:
        raise ValueError(f"--data {spec} is streamed (tar shards or --streaming): it has no random access; read it "
                         "with fvq_hf.data.streams.open_stream.")
    if spec.kind == "builtin":
        return PhotoList(builtin_photos(spec.split))
    if spec.kind == "hub":
        return HFImageDataset(spec.name, spec.split or split, image_column)
    path = Path(spec.name)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        return HFImageDataset(str(path), split, image_column)
    if not path.exists():
        raise FileNotFoundError(f"--data {spec.text!r} is neither 'builtin[:train|heldout|unseen]', 'hf:<name>', nor an "
                                "existing folder.")
    return ImageFolder(path)


def class_labels(source, label_column: str | None = None) -> tuple[list[int], list[str]]:
    """`(label of each image, class names)` of a source, for class-conditional generation.

    Builtin photos: each photo is a class (its crops, held-out strip included, share its label). Image folders:
    the first sub-folder under the root names the class (ImageNet's layout); files directly under the root form
    one class. `datasets` datasets: `label_column`, or the first `ClassLabel` column; without one, one class.
    """
    if isinstance(source, PhotoList):
        return list(range(len(source))), [name.partition(":")[0] for name in source.names]
    if isinstance(source, ImageFolder):
        parts = [p.relative_to(source.root).parts for p in source.paths]
        groups = [part[0] if len(part) > 1 else source.root.name for part in parts]
        names = sorted(set(groups))
        ids = {name: i for i, name in enumerate(names)}
        return [ids[g] for g in groups], names
    if isinstance(source, HFImageDataset):
        import datasets

        features = source.dataset.features
        column = label_column or next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
        if column is None:
            logger.warning("No label column in the dataset: every image gets class 0 (unconditional).")
            return [0] * len(source), ["image"]
        if column not in features:
            raise ValueError(f"--label-column {column!r} is not a column of the dataset ({list(features)}).")
        labels = [int(x) for x in source.dataset[column]]
        feature = features[column]
        names = feature.names if isinstance(feature, datasets.ClassLabel) else [str(i) for i in range(max(labels) + 1)]
        if min(labels) < 0 or max(labels) >= len(names):
            raise ValueError(f"Labels of column {column!r} must lie in [0, {len(names)}); got {min(labels)}..{max(labels)}.")
        return labels, names
    raise TypeError(f"No class labels for a source of type {type(source).__name__}.")


def readable(source, index: int) -> Image.Image | None:
    """`source[index]`, or None (logged by name) when that file is not a readable image."""
    try:
        return source[index]
    except ImageReadError as error:
        logger.warning("Skipping unreadable image: %s", error)
        return None


class RandomCrops(torch.utils.data.Dataset):
    """Random square crops of a source's images, resized to `resolution`, with random horizontal flips (`flip`).

    Item i of epoch e is a pure function of (seed, e, i): image i % len(source), a crop side drawn
    uniformly between `resolution` (or the shorter side, if smaller) and the shorter side, so the photos
    are seen at many scales. Determinism per item keeps resumed runs exact. `length` sets how many crops
    make an epoch (default: one per image).
    """

    def __init__(self, source, resolution: int, length: int | None = None, seed: int = 0, flip: bool = True) -> None:
        if len(source) == 0:
            raise ValueError("The training data holds no images.")
        self.source, self.resolution, self.seed, self.epoch, self.flip = source, resolution, seed, 0, flip
        self.length = length or len(source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        """`(3, resolution, resolution)` in [-1, 1]."""
        image = None
        for attempt in range(len(self.source)):
            image = readable(self.source, (index + attempt) % len(self.source))
            if image is not None:
                break
        if image is None:
            raise ValueError(f"None of the {len(self.source)} files of the training data can be read as an image "
                             "(corrupt, truncated or not images); see the warnings above for each file.")
        return self.crop(image, index)

    def crop(self, image: Image.Image, index: int) -> torch.Tensor:
        """Item `index`'s random crop (and flip) of `image`, `(3, resolution, resolution)` in [-1, 1]."""
        return random_crop(image, self.resolution, np.random.default_rng((self.seed, self.epoch, index)), self.flip)


def random_crop(image: Image.Image, resolution: int, rng: np.random.Generator, flip: bool = True) -> torch.Tensor:
    """A random square crop of `image` (side uniform between `resolution`, or the shorter side if smaller, and the
    shorter side), resized to `resolution`, flipped horizontally half the time with `flip`; `(3, R, R)` in [-1, 1]."""
    short = min(image.size)
    side = int(rng.integers(min(resolution, short), short + 1))
    left = int(rng.integers(0, image.width - side + 1))
    top = int(rng.integers(0, image.height - side + 1))
    crop = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.Resampling.BICUBIC)
    if rng.random() < 0.5 and flip:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return pil_to_tensor(crop)


def scaled_copies(image: Image.Image, resolution: int, scales: Sequence[float]) -> list[Image.Image]:
    """The image resized by each scale, keeping those at least `resolution` on their short side."""
    out = []
    for scale in scales:
        width, height = round(image.width * scale), round(image.height * scale)
        if min(width, height) >= resolution:
            out.append(image.resize((width, height), Image.Resampling.BICUBIC) if scale != 1.0 else image)
    return out


def tile_boxes(width: int, height: int, resolution: int, stride: int) -> list[tuple[int, int, int, int]]:
    """`(left, top, right, bottom)` of every `resolution`-sized tile `stride` apart (partial borders dropped)."""
    return [(left, top, left + resolution, top + resolution) for top in range(0, height - resolution + 1, stride)
            for left in range(0, width - resolution + 1, stride)]


# Builtin evaluation cuts each photo, at several scales, into tiles a fraction of a tile apart, each also
# mirrored. The held-out pixels are few, and a usage figure is only honest with tens of tokens per code:
# this gives the held-out sets about 32x the tokens of non-overlapping tiles (about 170 per code for
# K = 4096 at 64 px and downsample 8). Other data uses `resize_center_crop`.
BUILTIN_EVAL_SCALES = (1.0, 0.75, 0.5, 0.375, 0.25)
BUILTIN_EVAL_STRIDE = {"train": 0.5, "heldout": 0.25, "unseen": 0.25}  # of the tile side


class EvalImages(torch.utils.data.Dataset):
    """Deterministic evaluation images of a `--data` source at the model's resolution, `(3, R, R)` in [-1, 1].

    Builtin photos are cut into overlapping tiles at `BUILTIN_EVAL_SCALES`, each also mirrored (see
    `BUILTIN_EVAL_STRIDE`); any other image is resized and centre-cropped (the `fvq_hf.data.image_io` policy).
    Unreadable files are reported by name and skipped.
    """

    def __init__(self, data: str | DataSpec, resolution: int, split: str = "train", image_column: str | None = None,
                 limit: int | None = None) -> None:
        data = DataSpec.parse(data)
        source = open_source(data, split, image_column)
        self.skipped: list[str] = []
        if isinstance(source, PhotoList):
            stride = max(1, round(resolution * BUILTIN_EVAL_STRIDE[data.split]))
            self.scaled = [copy for image in source.images for copy in scaled_copies(image, resolution,
                                                                                      BUILTIN_EVAL_SCALES)]
            self.tiles = [(i, box, mirror) for i, copy in enumerate(self.scaled)
                          for box in tile_boxes(copy.width, copy.height, resolution, stride) for mirror in (False, True)]
            self._get: Callable[[int], Image.Image] = self._tile
            count = len(self.tiles)
        else:
            self.source, self.resolution = source, resolution
            count = len(source)
            self._get = self._crop
        self.indices = list(range(count if limit is None else min(limit, count)))
        if isinstance(source, ImageFolder):
            readable = []
            for i in self.indices:
                try:
                    with Image.open(source.paths[i]) as probe:
                        probe.verify()
                    readable.append(i)
                except Exception as error:  # PIL raises many types for broken files
                    self.skipped.append(str(source.paths[i]))
                    logger.warning("Skipping unreadable image %s (%s)", source.paths[i], error)
            self.indices = readable
        if not self.indices:
            raise ValueError(f"No readable images in --data {data.text!r}: every file is corrupt, truncated or not an "
                             "image (see the warnings above).")

    def _tile(self, index: int) -> Image.Image:
        copy, box, mirror = self.tiles[index]
        tile = self.scaled[copy].crop(box)
        return tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else tile

    def _crop(self, index: int) -> Image.Image:
        return resize_center_crop(self.source[index], self.resolution)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        return pil_to_tensor(self._get(self.indices[index]))
