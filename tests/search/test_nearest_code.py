"""The nearest-code search: argmin's ids (ties included) from both backends, in bounded memory."""

import functools
import os
import shutil
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils import cpp_extension
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from fvq_hf.search import build, dispatch, kernel, nearest_code

from ..helpers import argmin_truth, integer_data

BACKENDS = ["kernel", "torch"]


@pytest.fixture(scope="module", autouse=True)
def kernel_builds():
    # The kernel is the CPU default: where CI can build it, these tests must exercise it, not skip it.
    assert kernel.load_kernel() is not None, "the search kernel did not build (see the RuntimeWarning)"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n", "k", "dim"), [(1003, 777, 8), (5, 4099, 3), (300, 3, 17), (129, 257, 1),
                                             (97, 301, 256)])
def test_same_ids_as_argmin_with_ties(backend, n, k, dim):
    # Sizes that are multiples of neither the 16-code lanes, the 8-query micro-kernel nor the tiles.
    low, high = (-1, 2) if dim == 256 else (-3, 4)
    vectors, codebook = integer_data(n, k, dim, low=low, high=high)
    truth = argmin_truth(vectors, codebook)
    assert torch.equal(nearest_code(vectors, codebook, chunk_size=64, backend=backend), truth)


def test_duplicates_of_any_value_give_the_lowest_index_in_the_kernel():
    # Every copy of a code gets the same distance, bit for bit, wherever it sits. The torch backend cannot
    # promise that: BLAS rounds a dot product differently at another position in a block (measured: a
    # triplicated Gaussian codebook of 300 codes, chunk 64, gave copy 896 instead of 296 for one query).
    base = torch.randn(300, 8)
    codebook = torch.cat([base, base, base])
    assert torch.equal(nearest_code(base, codebook, backend="kernel"), torch.arange(300))


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_codes_give_the_lowest_index(backend):
    base, _ = integer_data(300, 1, 8, seed=5)  # exact arithmetic: also the torch backend's promise
    base = base.unique(dim=0)
    found = nearest_code(base, torch.cat([base, base, base]), chunk_size=64, backend=backend)
    assert torch.equal(found, torch.arange(len(base)))
    # Equal distances from codes far apart (another slab split, another chunk): the first one wins.
    codebook = torch.zeros(50_000, 4) + 10.0
    codebook[[3, 30_000, 49_999]] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    codebook[[17, 40_000]] = torch.tensor([-1.0, 0.0, 0.0, 0.0])
    assert nearest_code(torch.zeros(5, 4), codebook, backend=backend).tolist() == [3] * 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_gaussian_data_matches_fp64(backend):
    torch.manual_seed(0)
    vectors, codebook = torch.randn(500, 256), torch.randn(3000, 256)
    distance = torch.cdist(vectors.double(), codebook.double())
    two = distance.topk(2, dim=1, largest=False).values
    clear = (two[:, 1] - two[:, 0]) > 1e-4 * two[:, 0]  # rows where fp32 rounding cannot flip the order
    assert clear.float().mean() > 0.95
    found = nearest_code(vectors, codebook, backend=backend)
    assert torch.equal(found[clear], distance.argmin(dim=1)[clear])


def test_the_kernel_result_does_not_depend_on_the_thread_count():
    vectors, codebook = integer_data(5, 20_000, 8, seed=1)  # few queries: the codes are split across tasks
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nearest_code(vectors, codebook, backend="kernel")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, nearest_code(vectors, codebook, backend="kernel"))
    assert torch.equal(one, argmin_truth(vectors, codebook))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_input_is_searched_in_fp32(backend):
    vectors, codebook = integer_data(200, 999, 8, seed=2)  # small integers are exact in bf16
    found = nearest_code(vectors.bfloat16(), codebook.bfloat16(), backend=backend)
    assert torch.equal(found, argmin_truth(vectors, codebook))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_search_matches_the_cpu_kernel():
    vectors, codebook = integer_data(3000, 5000, 8, seed=3)
    assert torch.equal(nearest_code(vectors.cuda(), codebook.cuda()).cpu(), nearest_code(vectors, codebook))


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in elements) that any aten op returns, C++ callers included."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.fvq_hf.nearest_code.default:
            # The search is one custom op (for torch.compile): look inside it, where the backends allocate.
            with self:
                return dispatch.eager_search(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        self.shapes += [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out

    @property
    def largest(self) -> int:
        return max(torch.Size(shape).numel() for shape in self.shapes)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_tensor_of_n_by_k_elements(backend):
    n, k = 3000, 40_000
    vectors, codebook = integer_data(n, k, 8, seed=4)
    with LargestTensor() as seen:
        found = nearest_code(vectors, codebook, chunk_size=256, backend=backend)
    assert (n,) in seen.shapes  # the mode sees the kernel's own allocations too
    assert seen.largest <= k * 8  # the codebook's size (inputs, casts, packed slab), never N x K
    assert torch.equal(found[:50], argmin_truth(vectors[:50], codebook))


def test_auto_falls_back_to_torch_without_the_kernel(monkeypatch):
    def no_kernel(isa=None, *, required=False):
        if required:
            raise ValueError("fvq_hf could not build its search kernel (no compiler).")
        return None

    vectors, codebook = integer_data(100, 300, 8)
    monkeypatch.setattr(dispatch, "load_kernel", no_kernel)
    assert torch.equal(nearest_code(vectors, codebook), argmin_truth(vectors, codebook))
    with pytest.raises(ValueError, match=r"could not build its search kernel \(no compiler\).*backend='torch'"):
        nearest_code(vectors, codebook, backend="kernel")


@pytest.fixture
def unbuilt(monkeypatch, tmp_path):
    """As in a process that has not loaded the kernel yet, on an empty cache."""
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "kernels"))
    monkeypatch.setattr(kernel, "_built", functools.cache(kernel._built.__wrapped__))
    monkeypatch.setattr(kernel, "_WARNED", set())


def test_a_failed_build_warns_once_with_the_compiler_error(monkeypatch, unbuilt, capfd):
    def failing_build(**kwargs):
        raise RuntimeError("Error building extension 'x':\n[1/2] c++ ...\nnearest_code.cpp:3:1: error: boom\n")

    monkeypatch.setattr(cpp_extension, "load", failing_build)
    with pytest.warns(RuntimeWarning, match=r"nearest_code.cpp:3:1: error: boom.*FVQ_HF_SEARCH=torch"):
        assert kernel.load_kernel("portable") is None
    assert "fvq_hf: building the nearest-code search kernel for portable in" in capfd.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernel.load_kernel("portable") is None  # once: not at every search
    with pytest.raises(ValueError, match="error: boom"):
        kernel.load_kernel("portable", required=True)


def test_the_pip_installed_ninja_is_found_without_an_activated_venv(monkeypatch, unbuilt):
    ninja = pytest.importorskip("ninja")
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "ninja" else which(name))
    monkeypatch.setenv("PATH", os.environ["PATH"])  # restored afterwards
    path = []

    def load(**kwargs):
        path.append(os.environ["PATH"])
        raise RuntimeError("stop before building")

    monkeypatch.setattr(cpp_extension, "load", load)
    with pytest.raises(ValueError, match="stop before building"):
        kernel.load_kernel("portable", required=True)
    assert path[0].split(os.pathsep)[0] == ninja.BIN_DIR


def test_the_kernel_refuses_what_it_cannot_serve():
    with pytest.raises(ValueError, match="fp64"):
        nearest_code(torch.randn(4, 8, dtype=torch.float64), torch.randn(10, 8), backend="kernel")
    vectors, codebook = integer_data(40, 50, 8)
    assert torch.equal(nearest_code(vectors.double(), codebook.double()), argmin_truth(vectors, codebook))


def test_environment_variable_picks_the_backend(monkeypatch):
    def no_kernel(isa=None):
        raise AssertionError("FVQ_HF_SEARCH=torch must not touch the kernel")

    vectors, codebook = integer_data(30, 70, 8)
    monkeypatch.setattr(dispatch, "load_kernel", no_kernel)
    monkeypatch.setenv("FVQ_HF_SEARCH", "torch")
    assert torch.equal(nearest_code(vectors, codebook), argmin_truth(vectors, codebook))
    monkeypatch.setenv("FVQ_HF_SEARCH", "gpu")
    with pytest.raises(ValueError, match=r"'gpu'.*FVQ_HF_SEARCH.*auto, kernel, torch"):
        nearest_code(vectors, codebook)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        nearest_code(torch.randn(4, 8), torch.randn(10, 7))
    with pytest.raises(ValueError, match="chunk_size"):
        nearest_code(torch.randn(4, 8), torch.randn(10, 8), chunk_size=0)
    with pytest.raises(ValueError, match="no codes"):
        nearest_code(torch.randn(4, 8), torch.randn(0, 8))
    with pytest.raises(ValueError, match="on cpu and the codebook on meta"):
        nearest_code(torch.randn(4, 8), torch.randn(10, 8, device="meta"))
    assert nearest_code(torch.randn(0, 8), torch.randn(10, 8)).shape == (0,)


def test_the_search_builds_no_graph():
    codebook = torch.randn(10, 8, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = nearest_code(torch.randn(4, 8, requires_grad=True), codebook)
    assert not found.requires_grad and found.grad_fn is None


def test_the_search_is_a_custom_op_that_compiles_without_a_graph_break():
    vectors, codebook = integer_data(300, 500, 8, seed=6)
    compiled = torch.compile(nearest_code, backend="eager", fullgraph=True)  # fails at a graph break
    assert torch.equal(compiled(vectors, codebook), argmin_truth(vectors, codebook))
    with FakeTensorMode() as mode:  # what the compiler sees: the shape, without running a search
        found = torch.ops.fvq_hf.nearest_code(mode.from_tensor(vectors), mode.from_tensor(codebook), 64, None)
    assert found.shape == (300,) and found.dtype == torch.long
