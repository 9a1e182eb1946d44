"""The search kernel of every instruction set this CPU runs (the widest, AVX2, and the portable 128-bit build that
serves any CPU), with every micro-kernel shape: argmin's ids, ties to the lowest index, whatever the sizes, the
slabs and the thread count."""

import pytest
import torch

from fvq_hf.search import kernel

from ..helpers import argmin_truth, integer_data

SHAPES = ["register", "tile", "screen", "auto"]
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


@pytest.mark.parametrize("dim", [3, 8, 64])
def test_every_shape_gives_the_same_ids_on_gaussian_data(built, dim):
    # Every shape computes each distance the same way, bit for bit: the same ids, near-ties included. For "screen"
    # this also checks that a group computed again for one query gives the values its first pass gave.
    torch.manual_seed(dim)
    vectors, codebook = torch.randn(700, dim), torch.randn(20_000, dim)
    found = {shape: search(built, vectors, codebook, shape) for shape in SHAPES}
    assert all(torch.equal(found["register"], ids) for ids in found.values())
    assert torch.equal(found["screen"], search(built, vectors, codebook, "screen", query_block=5, chunk_bytes=999))


def test_screen_when_every_group_holds_a_new_best(built):
    # Codes in order of decreasing distance from the queries (the worst case for "screen": every group beats the
    # best so far), each code twice in a row (a tie that the first copy must win), shifted off the lane boundaries.
    torch.manual_seed(1)
    vectors = torch.zeros(9, 8)
    codebook = torch.randn(3000, 8)
    codebook = codebook[codebook.norm(dim=1).argsort(descending=True)].repeat_interleave(2, dim=0)
    codebook = torch.cat([torch.full((5, 8), 9.0), codebook])
    truth = argmin_truth(vectors, codebook)
    assert truth.tolist() == [5 + 2 * 2999] * 9
    for query_block, chunk_bytes in [(128, 128 * 1024), (3, 1), (4, 700)]:
        assert torch.equal(search(built, vectors, codebook, "screen", query_block, chunk_bytes), truth)


def test_the_arithmetic_peak_is_measured(built):
    assert built.fma_peak(200_000) > 1e8  # multiply-adds per second: any CPU of this century


def test_an_isa_is_chosen_by_name_and_refused_where_it_cannot_run(monkeypatch):
    monkeypatch.delenv(kernel.ISA_ENV, raising=False)  # the suite also runs with FVQ_HF_SEARCH_ISA set
    assert kernel.choose_isa("portable") == "portable"
    assert kernel.choose_isa() == kernel.supported_isas()[0]
    monkeypatch.setenv(kernel.ISA_ENV, "portable")
    assert kernel.choose_isa() == "portable"
    with pytest.raises(ValueError, match=r"Unknown search kernel ISA 'avx9'.*portable"):
        kernel.choose_isa("avx9")
    monkeypatch.setattr(kernel, "cpu_flags", lambda: {"sse2"})
    with pytest.raises(ValueError, match="cannot run the x86-64-v4 search kernel"):
        kernel.choose_isa("x86-64-v4")
