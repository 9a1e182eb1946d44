"""`fvq-build-codebook`: a codebook table made as VQGAN-LC makes its codebook (Zhu et al., arXiv 2406.11837, §3.2,
§4.1; their `codebook_generation/`): features of a frozen pretrained encoder over a data set, average-pooled, then
k-means per class (their default: 1,000 ImageNet classes x 100 centres) or over all of them, the centres stacked
into one `(K, D)` table, written with `data.table_file.save_table` for `fvq-train --init-table`.

    build_codebook(CodebookBuildConfig(encoder="openai/clip-vit-large-patch14", data="/data/imagenet/train",
                                       output="tables/clip-L-100k.safetensors", codebook_size=100_000, pool=4))

Order of work, in every process: encode this process's share of the images, pool each feature grid, offer the
vectors to a per-group bottom-k sampler (`sampling`: at most `samples_per_group` vectors per group, kept as they
come, never all features); then merge each group's samples in one process (groups dealt out round robin), cluster
it there (`kmeans`, FAISS) and gather the centres in the main process, which writes the table. The samples a group
keeps depend on the seed and the data only, not on the process that read them: one process and many cluster the
same samples (their values equal up to fp32 rounding, which varies with a batch's make-up and the thread count);
except for a stream whose examples carry no `__key__` (a Hub dataset), whose items are named by their position in
each process's and DataLoader worker's share (`data.views.StreamViews`): its samples depend on those counts.

Memory (per process): at most `samples_per_group x groups` vectors of D fp32 values (4 D bytes each, plus an 8-byte
key), plus the encoder, one batch of images and its features, and, while merging a group, the samples the other
processes send for it (up to (processes - 1) x `samples_per_group`), the DataLoader's prefetched batches, and the
source's own index (an image folder's list of paths and labels: O(images) small entries, not features). The
k-means of a group holds its samples (twice while they are sorted by key) and centres.

The table's rows are grouped in the order of the group labels (class ids, sorted); each group has K // G centres,
the first K % G groups one more. Their metadata say which rows are which group (`group_names`,
`group_codebook_sizes`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..data.sources import class_labels, open_source
from ..data.spec import DataSpec
from ..data.streams import open_stream
from ..data.table_file import load_table, save_table
from ..data.views import SourceViews, StreamViews, collate_views
from .features import FeatureEncoder, check_pooling, load_encoder, pooled_vectors
from .kmeans import LIBRARY, faiss_gpus, kmeans
from .sampling import GroupSampler, sample_keys

logger = logging.getLogger(__name__)

GROUPINGS = ("classes", "global")
ALGORITHM = "Lloyd, random samples as initial centres"
SELECTION = "none: a random selection of the samples (--kmeans-iterations 0)"
FEW_SAMPLES_PER_CENTRE = 39  # FAISS's own warning threshold (min_points_per_centroid)


@dataclass(frozen=True)
class CodebookBuildConfig:
    """What a build is; `fvq-build-codebook` fills it from its flags (a field per flag).

    `groups`: "classes" clusters each class on its own (VQGAN-LC's default; classes are an image folder's
    sub-folders, a dataset's ClassLabel or `label_column`, each builtin photo), "global" all vectors at once.
    `samples_per_group` caps the vectors kept per group (the memory bound). `random_crops`: that many random
    multi-scale crops per image instead of one centre crop (the builtin photos are 14). `kmeans_iterations=0`: no
    k-means, each group's rows a random selection of its samples (VQGAN-LC's "random selection" ablation).
    """

    encoder: str
    data: str
    output: str
    codebook_size: int
    pool: int = 1
    groups: str = "classes"
    samples_per_group: int = 20_000
    kmeans_iterations: int = 25
    seed: int = 0
    random_crops: int | None = None
    split: str = "train"
    streaming: bool = False
    image_column: str | None = None
    label_column: str | None = None
    batch_size: int = 64
    num_workers: int = 2
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.groups not in GROUPINGS:
            raise ValueError(f"--groups must be one of {', '.join(GROUPINGS)}, got {self.groups!r}.")
        for name in ("codebook_size", "pool", "samples_per_group", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        if self.kmeans_iterations < 0:
            raise ValueError(f"--kmeans-iterations must be >= 0 (0: a random selection of samples), got "
                             f"{self.kmeans_iterations}.")
        if self.random_crops is not None and self.random_crops < 1:
            raise ValueError(f"--random-crops must be >= 1, got {self.random_crops}.")
        if self.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {self.num_workers}.")


@dataclass
class CodebookBuildResult:
    path: Path
    table: torch.Tensor  # (K, D) fp32
    metadata: dict[str, str]


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an output that cannot be written, before any work: a folder, an existing file without `overwrite`,
    a torch-pickle suffix, a folder that cannot be made or written to."""
    if path.suffix in (".pt", ".pth", ".bin"):
        raise ValueError(f"--output {path}: a table file is safetensors; name it {path.with_suffix('.safetensors')}.")
    if path.is_dir():
        raise IsADirectoryError(f"--output {path} is a folder; give the table file's path.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"--output {path} exists; choose another path or pass --overwrite.")
    probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(f"--output {path} cannot be written ({error.strerror or error}); choose a writable path.") \
            from error


def split_codebook(codebook_size: int, groups: int) -> list[int]:
    """Centres per group: K // G each, the first K % G groups one more."""
    base, extra = divmod(codebook_size, groups)
    return [base + (i < extra) for i in range(groups)]


def check_sizes(config: CodebookBuildConfig, names: dict[int, str], available: dict[int, int],
                bound: bool = False) -> list[int]:
    """The centres per group (in label order); a ValueError when K is below the number of groups or a group has
    fewer samples than centres. `available` holds the samples per group, or (`bound`) an upper bound of them before
    any encoding."""
    groups = sorted(available)
    if config.codebook_size < len(groups):
        raise ValueError(f"--codebook-size {config.codebook_size} is smaller than the {len(groups)} groups ("
                         f"{config.groups}): each needs at least one centre; use a larger K or --groups global.")
    sizes = split_codebook(config.codebook_size, len(groups))
    for group, size in zip(groups, sizes):
        if available[group] < size:
            limit = f"the cap, --samples-per-group {config.samples_per_group}" if \
                available[group] == config.samples_per_group else "what the data give"
            held = f"{'at most ' if bound else ''}{available[group]}"
            raise ValueError(f"Group {names.get(group, group)!r} has {held} samples for its {size} centres ({limit}): "
                             "use --random-crops (more crops), a smaller --pool, a larger --samples-per-group, fewer "
                             "groups or a smaller --codebook-size.")
    return sizes


class Processes:
    """The collectives a build needs, over `torch.distributed` when several processes run (accelerate's state),
    and trivial in one."""

    def __init__(self, state) -> None:
        self.rank, self.world = state.process_index, state.num_processes

    def all_gather(self, value) -> list:
        if self.world == 1:
            return [value]
        values = [None] * self.world
        torch.distributed.all_gather_object(values, value)
        return values

    def gather(self, value, dst: int) -> list | None:
        if self.world == 1:
            return [value]
        values = [None] * self.world if self.rank == dst else None
        torch.distributed.gather_object(value, values, dst=dst)
        return values


def open_views(config: CodebookBuildConfig, data: DataSpec, encoder: FeatureEncoder, processes: Processes,
               vectors_per_view: int):
    """`(this process's views, group names by label, samples per group at most, number of views)` of `data`; the
    last two are None for a stream (its length and labels are unknown until read)."""
    classes = config.groups == "classes"
    if data.streaming:
        if classes and config.label_column is None:
            raise ValueError(f"--data {data} is streamed, and a stream has no classes unless --label-column names its "
                             "class column: pass it, or use --groups global.")
        stream, column = open_stream(data, config.split, config.image_column)
        views = StreamViews(stream, column, encoder.prepare, encoder.resolution, config.label_column if classes else None,
                            config.random_crops, config.seed, processes.rank, processes.world)
        return views, {}, None, None
    source = open_source(data, config.split, config.image_column)
    labels, names = class_labels(source, config.label_column) if classes else ([0] * len(source), ["all"])
    views = SourceViews(source, labels, encoder.prepare, encoder.resolution, config.random_crops, config.seed)
    share = Subset(views, range(processes.rank, len(views), processes.world))
    per_image = (config.random_crops or 1) * vectors_per_view
    bound: dict[int, int] = {}
    for label in labels:
        bound[label] = bound.get(label, 0) + per_image
    bound = {g: min(n, config.samples_per_group) for g, n in bound.items()}
    return share, dict(enumerate(names)), bound, len(share)


@torch.no_grad()
def sample_features(config: CodebookBuildConfig, encoder: FeatureEncoder, views, count: int | None, device,
                    show_progress: bool) -> GroupSampler:
    """Encode every view, pool, and offer the vectors to a per-group sampler (this process's share)."""
    from tqdm.auto import tqdm

    sampler = GroupSampler(config.samples_per_group, encoder.dim)
    loader = DataLoader(views, batch_size=config.batch_size, num_workers=config.num_workers, collate_fn=collate_views)
    with tqdm(total=count, desc="encoding images", unit="img", disable=not show_progress) as bar:
        for batch in loader:
            if batch is None:
                continue
            pixels, groups, identities = batch
            vectors = pooled_vectors(encoder(pixels.to(device)), config.pool).float().cpu().numpy()
            keys = np.stack([sample_keys(config.seed, identity, vectors.shape[1]) for identity in identities])
            groups = np.asarray(groups)
            for group in np.unique(groups):
                rows = groups == group
                sampler.add(int(group), keys[rows].reshape(-1), vectors[rows].reshape(-1, encoder.dim))
            bar.update(len(pixels))
    return sampler


def merge_groups(sampler: GroupSampler, processes: Processes) -> tuple[list[int], dict[int, int]]:
    """Bring each group's samples together in one process (groups dealt out round robin, in label order); returns
    `(all groups, owner process of each)`. Afterwards a process holds its own groups only, merged."""
    groups = sorted(set().union(*processes.all_gather(sampler.groups)))
    owner = {group: i % processes.world for i, group in enumerate(groups)}
    if processes.world > 1:
        for group in groups:
            mine = owner[group] == processes.rank
            part = sampler.take(group) if group in sampler.groups and not mine else None
            received = processes.gather(part, dst=owner[group])
            for other in received or []:
                if other is not None:
                    sampler.merge(group, *other)
    return groups, owner


def build_codebook(config: CodebookBuildConfig) -> CodebookBuildResult:
    """Run the build of `config` (see the module docstring); every process returns the written table."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    output, data = Path(config.output), DataSpec.parse(config.data, config.streaming)
    # Accelerator's state, not a bare PartialState: on CPU under torchrun only the former is MULTI_CPU (a bare
    # PartialState is one process of one, and every process would build, and write, the whole table).
    state = Accelerator().state
    processes = Processes(state)
    check_output(output, config.overwrite)  # in every process, so that all stop
    encoder = load_encoder(config.encoder)
    pooled_grid = check_pooling(encoder.grid, config.pool, config.encoder)
    vectors_per_view = pooled_grid[0] * pooled_grid[1]
    described = dict(
        encoder=str(Path(config.encoder).resolve()) if Path(config.encoder).is_dir() else config.encoder,
        encoder_type=encoder.name, features=encoder.features, resolution=encoder.resolution,
        feature_grid=list(encoder.grid), pooling=config.pool, pooled_grid=list(pooled_grid), feature_dim=encoder.dim,
        seed=config.seed, data=str(data), **({"split": data.split or config.split} if data.kind in ("hub", "path")
                                               else {}), random_crops=config.random_crops)
    views, names, bound, count = open_views(config, data, encoder, processes, vectors_per_view)
    if bound is not None:  # what the data can give at most: refused before any encoding
        check_sizes(config, names, bound, bound=True)
    encoder = encoder.to(state.device)
    sampler = sample_features(config, encoder, views, count, state.device, state.is_local_main_process)
    del encoder

    groups, owner = merge_groups(sampler, processes)
    counts: dict[int, tuple[int, int]] = {}
    for part in processes.all_gather({g: (sampler.count(g), sampler.seen(g)) for g in sampler.groups}):
        counts.update(part)
    if not groups:
        raise ValueError(f"No readable images in --data {config.data} (see the warnings above).")
    names = {g: names.get(g, str(g)) for g in groups}
    sizes = dict(zip(groups, check_sizes(config, names, {g: counts[g][0] for g in groups})))
    few = min(counts[g][0] / sizes[g] for g in groups)
    if few < FEW_SAMPLES_PER_CENTRE and config.kmeans_iterations:  # a random selection needs no samples per centre
        logger.warning("As few as %.1f samples per centre (under %d, FAISS's own warning threshold): more "
                       "--random-crops or a larger --samples-per-group would give better centres.", few,
                       FEW_SAMPLES_PER_CENTRE)

    gpu = kmeans_device(state.device, faiss_gpus())
    mine = [g for g in groups if owner[g] == processes.rank]
    clustered = {}
    with tqdm(total=len(mine) * config.kmeans_iterations, desc="k-means", unit="step",
              disable=not state.is_local_main_process) as bar:
        for group in mine:
            _, vectors, _ = sampler.take(group)
            seed = int(np.random.SeedSequence((config.seed, group)).generate_state(1)[0] >> 1)  # FAISS: an int32
            result = kmeans(vectors, sizes[group], seed, config.kmeans_iterations, gpu,
                            step=StepBar(bar, names[group]))
            bar.update(config.kmeans_iterations - result.iterations)  # converged early
            clustered[group] = (result.centres, result.iterations)
    gathered = processes.gather(clustered, dst=0)

    if state.is_main_process:
        for part in gathered:
            clustered.update(part)
        table = torch.from_numpy(np.concatenate([clustered[g][0] for g in groups]))
        save_table(output, table, {**described, **dict(
            groups=config.groups, group_names=[names[g] for g in groups],
            group_codebook_sizes=[sizes[g] for g in groups], samples_per_group=[counts[g][0] for g in groups],
            vectors_per_group=[counts[g][1] for g in groups], sample_cap=config.samples_per_group,
            kmeans={"library": LIBRARY, "version": kmeans_version(), "algorithm": ALGORITHM if config.kmeans_iterations
                    else SELECTION, "max_iterations": config.kmeans_iterations,
                    "iterations": [clustered[g][1] for g in groups]})})
        logger.info("Wrote a (%d, %d) table: %d groups (%s), %s samples per group, to %s.", *table.shape, len(groups),
                    config.groups, describe_range([counts[g][0] for g in groups]), output)
    state.wait_for_everyone()
    table, metadata = load_table(output)
    return CodebookBuildResult(output, table, metadata)


def kmeans_device(device: torch.device, faiss_gpus: int) -> int | None:
    """The GPU a process's k-means runs on: its own CUDA device (`cuda:i`; bare `cuda` is the current one), or None
    (the CPU) for a CPU process or a FAISS without GPUs."""
    if device.type != "cuda" or faiss_gpus < 1:
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


class StepBar:
    """The k-means progress bar's step callback for one group."""

    def __init__(self, bar, group: str) -> None:
        self.bar, self.group = bar, group

    def __call__(self, iteration: int, objective: float) -> None:
        self.bar.update()
        self.bar.set_postfix(group=self.group, objective=f"{objective:.4g}", refresh=False)


def describe_range(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def kmeans_version() -> str:
    import faiss

    return faiss.__version__
