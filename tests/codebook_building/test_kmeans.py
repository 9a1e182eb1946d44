"""The k-means behind fvq-build-codebook: plain Lloyd from random samples, as VQGAN-LC's (kmeans_pytorch), via FAISS."""

import numpy as np
import pytest

from fvq_hf.codebook_building.kmeans import gpu_resources, kmeans


def blobs(seed: int = 0, per_blob: int = 50, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=10, size=(4, dim)).astype(np.float32)
    samples = (means[:, None] + rng.normal(size=(4, per_blob, dim))).reshape(-1, dim).astype(np.float32)
    return samples, means


def lloyd(samples: np.ndarray, centres: np.ndarray, steps: int) -> np.ndarray:
    """The textbook algorithm in float64: assign to the nearest centre, move each centre to its samples' mean."""
    centres = centres.astype(np.float64)
    for _ in range(steps):
        nearest = ((samples[:, None].astype(np.float64) - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([samples[nearest == c].mean(0) for c in range(len(centres))])
    return centres


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_each_step_is_a_lloyd_step_from_random_samples(steps):
    samples, _ = blobs(per_blob=30)
    samples = samples + np.random.default_rng(1).normal(scale=6, size=samples.shape).astype(np.float32)  # overlap
    result = kmeans(samples, 7, seed=3, max_iterations=steps)
    start = samples[np.sort(np.random.default_rng(3).choice(len(samples), 7, replace=False))]
    assert result.iterations == steps
    np.testing.assert_allclose(result.centres, lloyd(samples, start, steps), rtol=0, atol=1e-4)


def test_it_stops_at_a_fixed_point_and_the_objective_never_rises():
    samples, _ = blobs()
    objectives = []
    result = kmeans(samples, 6, seed=0, max_iterations=50, step=lambda i, objective: objectives.append(objective))
    assert result.iterations == len(objectives) < 50
    np.testing.assert_allclose(lloyd(samples, result.centres, 1), result.centres, rtol=0, atol=1e-4)
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objectives, objectives[1:]))
    nearest = ((samples[:, None] - result.centres[None]) ** 2).sum(-1).min(1)
    assert result.objective == pytest.approx(nearest.sum(), rel=1e-4)  # the last assignment's, at these centres


def test_a_seed_gives_the_same_centres_and_another_seed_others():
    samples, _ = blobs(per_blob=40)
    first, again = kmeans(samples, 12, seed=5), kmeans(samples, 12, seed=5)
    assert np.array_equal(first.centres, again.centres)
    assert not np.array_equal(first.centres, kmeans(samples, 12, seed=6).centres)


def test_k_must_lie_between_one_and_the_samples():
    samples, _ = blobs(per_blob=2)
    with pytest.raises(ValueError, match=r"8 samples into 9 centres: k must lie in \[1, 8\]"):
        kmeans(samples, 9)
    assert kmeans(samples, 8).centres.shape == (8, 6)


def test_zero_iterations_is_a_random_selection_of_the_samples():
    """VQGAN-LC's "random selection" ablation: the seeded initial centres, untouched, with their objective."""
    samples, _ = blobs(per_blob=30)
    result = kmeans(samples, 9, seed=4, max_iterations=0)
    start = samples[np.sort(np.random.default_rng(4).choice(len(samples), 9, replace=False))]
    assert result.iterations == 0 and np.array_equal(result.centres, start)
    nearest = ((samples[:, None] - start[None]) ** 2).sum(-1).min(1)
    assert result.objective == pytest.approx(nearest.sum(), rel=1e-4)
    assert result.objective > kmeans(samples, 9, seed=4, max_iterations=1).objective  # one Lloyd step moves them
    with pytest.raises(ValueError, match="max_iterations must be >= 0, got -1"):
        kmeans(samples, 9, max_iterations=-1)


def test_a_gpu_build_assigns_on_its_own_device_only(monkeypatch):
    """Under `accelerate launch` each process clusters on its own GPU: the index is moved to that device alone and
    is the one Lloyd assigns with, and one set of FAISS GPU resources serves every group (a stand-in for faiss-gpu's
    calls: it records the device and resources and gives a new CPU index, which must receive the samples)."""
    import faiss

    moved = []

    def to_gpu(resources, device, index):
        moved.append((type(resources).__name__, device, type(index).__name__, faiss.IndexFlatL2(index.d), resources))
        return moved[-1][3]

    monkeypatch.setattr(faiss, "StandardGpuResources", type("StandardGpuResources", (), {}), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    gpu_resources.cache_clear()  # the stand-in's resources below; cleared again after, so none outlives the test
    samples, _ = blobs()
    on_gpu, on_cpu = kmeans(samples, 4, seed=1, max_iterations=3, gpu=3), kmeans(samples, 4, seed=1, max_iterations=3)
    again = kmeans(samples, 4, seed=1, max_iterations=3, gpu=3)
    gpu_resources.cache_clear()
    assert [m[:3] for m in moved] == [("StandardGpuResources", 3, "IndexFlatL2")] * 2
    assert moved[0][3].ntotal == 4  # Lloyd's last assignment searched the moved index (the 4 centres added to it)
    assert moved[0][4] is moved[1][4]  # one resources object per device, not one per call
    np.testing.assert_array_equal(on_gpu.centres, on_cpu.centres)
    np.testing.assert_array_equal(again.centres, on_cpu.centres)


@pytest.mark.parametrize("device, gpus, expected", [("cuda:1", 2, 1), ("cuda", 1, 0), ("cpu", 2, None),
                                                    ("cuda:1", 0, None)])
def test_each_process_takes_its_own_gpu_for_k_means(device, gpus, expected, monkeypatch):
    """The build's choice: the process's CUDA device (accelerate gives process i `cuda:i`; bare `cuda` the current
    device, faked as 0 here), the CPU without one or without a GPU build of FAISS."""
    import torch

    from fvq_hf.codebook_building.build import kmeans_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert kmeans_device(torch.device(device), gpus) == expected
