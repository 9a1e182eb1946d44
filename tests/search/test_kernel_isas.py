"""The search kernel of every instruction set this CPU runs (the widest, AVX2, and the portable 128-bit build that
serves any CPU), with both micro-kernel shapes: argmin's ids, ties to the lowest index, whatever the sizes, the
slabs and the thread count."""

import pytest
import torch

from fvq_hf.search import kernel

from ..helpers import argmin_truth, integer_data

SHAPES = ["register", "tile", "auto"]
CASES = [(1003, 777, 8), (5, 4099, 3), (300, 3, 17), (129, 257, 1), (97, 301, 256), (13, 40, 33), (1, 1, 5)]


@pytest.fixture(scope="module", params=kernel.supported_isas())
def built(request):
    module = kernel.build_kernel(request.param)
    assert module is not None, f"the {request.param} kernel did not build (see the RuntimeWarning)"
    assert module.isa == request.param and module.lanes == kernel.ISAS[request.param][1]
    return module


def search(module, vectors, codebook, shape, query_block=kernel.KERNEL_QUERY_BLOCK, chunk_bytes=kernel.KERNEL_CHUNK_BYTES):
    return module.nearest_code(vectors, codebook, query_block, chunk_bytes, shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("n", "k", "dim"), CASES)
def test_same_ids_as_argmin_with_ties(built, shape, n, k, dim):
    # Sizes that are multiples of neither the lanes, the queries of a micro-kernel nor the tiles; small integers,
    # so that exact ties are frequent.
    low, high = (-1, 2) if dim == 256 else (-3, 4)
    vectors, codebook = integer_data(n, k, dim, low=low, high=high)
    truth = argmin_truth(vectors, codebook)
    assert torch.equal(search(built, vectors, codebook, shape), truth)
    # Tiny query blocks and chunks: many tasks, split slabs, chunks that end inside a tile
    assert torch.equal(search(built, vectors, codebook, shape, query_block=3, chunk_bytes=1), truth)


@pytest.mark.parametrize("shape", SHAPES)
def test_duplicates_across_slabs_give_the_lowest_index(built, shape):
    base = torch.randn(300, 8)
    assert torch.equal(search(built, base, torch.cat([base, base, base]), shape), torch.arange(300))
    codebook = torch.zeros(300_000, 4) + 10.0  # more than one 4 MiB slab of packed codes
    codebook[[3, 150_000, 299_999]] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    codebook[[17, 200_000]] = torch.tensor([-1.0, 0.0, 0.0, 0.0])
    assert search(built, torch.zeros(7, 4), codebook, shape).tolist() == [3] * 7


@pytest.mark.parametrize("shape", SHAPES)
def test_the_result_does_not_depend_on_the_thread_count(built, shape):
    vectors, codebook = integer_data(5, 20_000, 24, seed=1)  # few queries: the codes are split across tasks
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = search(built, vectors, codebook, shape)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, search(built, vectors, codebook, shape))
    assert torch.equal(one, argmin_truth(vectors, codebook))


def test_both_shapes_agree_on_gaussian_data(built):
    torch.manual_seed(0)
    vectors, codebook = torch.randn(700, 64), torch.randn(5000, 64)
    assert torch.equal(search(built, vectors, codebook, "register"), search(built, vectors, codebook, "tile"))


def test_the_arithmetic_peak_is_measured(built):
    assert built.fma_peak(200_000) > 1e8  # multiply-adds per second: any CPU of this century


def test_an_isa_is_chosen_by_name_and_refused_where_it_cannot_run(monkeypatch):
    assert kernel.choose_isa("portable") == "portable"
    assert kernel.choose_isa() == kernel.supported_isas()[0]
    monkeypatch.setenv(kernel.ISA_ENV, "portable")
    assert kernel.choose_isa() == "portable"
    with pytest.raises(ValueError, match=r"Unknown search kernel ISA 'avx9'.*portable"):
        kernel.choose_isa("avx9")
    monkeypatch.setattr(kernel, "cpu_flags", lambda: {"sse2"})
    with pytest.raises(ValueError, match="cannot run the x86-64-v4 search kernel"):
        kernel.choose_isa("x86-64-v4")
