"""k-means of one group's samples into its part of the codebook: exact Lloyd iterations with FAISS.

Why FAISS (`faiss-cpu`, already this package's `bench` dependency; `faiss-gpu` on CUDA machines) and not
scikit-learn: VQGAN-LC clusters with full-batch Lloyd (`kmeans_pytorch.kmeans`, random initial centres), which FAISS
does exactly, its assignment a BLAS distance product, so that a codebook of 100,000 centres is within reach on a
CPU; the same code runs on GPUs when the installed FAISS has them (`faiss.get_num_gpus()`). scikit-learn runs on the
CPU only and would be a new dependency (it is not installed by any extra). A mini-batch or streaming k-means is not
needed to bound memory: the samples are already capped per group (`sampling`).

What runs: the initial centres are `k` distinct samples drawn with the seed (as `kmeans_pytorch`'s random
initialisation), then up to `max_iterations` Lloyd steps (assign each sample to its nearest centre by squared L2,
move each centre to its samples' mean; FAISS re-seeds an empty centre by splitting the largest cluster), one FAISS
call a step, stopping early when a step leaves the centres unchanged (a fixed point). No normalisation, as theirs.
`max_iterations=0` keeps the initial centres: a random selection of `k` samples, VQGAN-LC's "random selection"
ablation (their Table 10), its objective measured at those centres.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LIBRARY = "faiss"


@dataclass
class KMeansResult:
    centres: np.ndarray  # (k, D) float32
    iterations: int  # Lloyd steps run
    objective: float  # sum of squared distances of the samples to their centres, at the last assignment


def faiss_gpus() -> int:
    """GPUs the installed FAISS can use (0 with faiss-cpu)."""
    import faiss

    return faiss.get_num_gpus()


@functools.cache
def gpu_resources(device: int):
    """FAISS's resources (streams, scratch memory) on one GPU: made once per process and device, not once per group
    (a build clusters up to a thousand groups)."""
    import faiss

    return faiss.StandardGpuResources()


def kmeans(samples: np.ndarray, k: int, seed: int = 0, max_iterations: int = 25, gpu: int | None = None,
           step: Callable[[int, float], None] | None = None) -> KMeansResult:
    """Cluster `samples` `(n, D)` into `k` centres (see the module docstring); `step(iteration, objective)` is
    called after each Lloyd step (a progress bar). `gpu`: the CUDA device whose FAISS index assigns the samples
    (this process's own under `accelerate launch`, so that processes do not share GPUs), None for the CPU.
    Deterministic for a seed on a given machine."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError("The codebook's k-means uses FAISS: pip install faiss-cpu (in fvq-hf[bench]), or "
                          "faiss-gpu on a CUDA machine.") from error
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    n, dim = samples.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means of {n} samples into {k} centres: k must lie in [1, {n}].")
    if max_iterations < 0:
        raise ValueError(f"max_iterations must be >= 0, got {max_iterations}.")
    rng = np.random.default_rng(seed)
    centres = samples[np.sort(rng.choice(n, k, replace=False))]
    if max_iterations == 0:  # a random selection: no Lloyd step
        index = faiss.IndexFlatL2(dim)
        index.add(centres)
        distances, _ = index.search(samples, 1)
        return KMeansResult(centres.copy(), 0, float(distances.astype(np.float64).sum()))
    # One Lloyd step per call; every sample is used (no subsampling: max_points_per_centroid x k >= n), and no
    # warning for few samples per centre (the caller reports samples per centre).
    lloyd = faiss.Kmeans(dim, k, niter=1, seed=seed, max_points_per_centroid=n, min_points_per_centroid=1)
    if gpu is not None:  # one device (faiss.Kmeans's own `gpu=` takes the first n GPUs, in every process)
        lloyd.index = faiss.index_cpu_to_gpu(gpu_resources(gpu), gpu, faiss.IndexFlatL2(dim))
    objective, iterations = float("nan"), 0
    for iterations in range(1, max_iterations + 1):
        objective = float(lloyd.train(samples, init_centroids=centres))
        moved = not np.array_equal(lloyd.centroids, centres)
        centres = lloyd.centroids.copy()
        if step is not None:
            step(iterations, objective)
        if not moved:
            break
    return KMeansResult(centres, iterations, objective)
