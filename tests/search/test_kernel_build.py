"""The search kernel's build and cache (fvq_hf/search/build.py), as processes use it: a kill -9 in the middle of a
build blocks no later search, processes started together build once, two copies of the package share one build, a
damaged .so is rebuilt and never loaded; and bad input (an ISA the CPU cannot run, no compiler, a cache that cannot
be written, a builder that never finishes) gives a clear message and the tiled fallback, or with
FVQ_HF_SEARCH=kernel a clear error.

Each search runs in a fresh process on a cache of the test's own: $FVQ_HF_KERNEL_CACHE and $TORCH_EXTENSIONS_DIR
both point into it, so that each test also tells what torch's own cache did before (issue 36). Builds take about
half a minute, so the suite compiles once: a first build killed in its middle, then two processes started together
on that cache (`built`); the tests that need a built cache copy theirs, and a rebuild is stood in for by the built
library where the claim is about what is loaded, not about compiling."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from fvq_hf import nearest_code
from fvq_hf.search import kernel

from ..helpers import ROOT, argmin_truth, integer_data

TIMEOUT_S = 240  # a build takes ~25 s on the 2-core machine; a search that waits on a dead builder, forever

# One process's searches: argmin's ids? How long? Which warnings or which error (backend "kernel")?
SEARCH = r"""
import json, sys, time, warnings

import torch

import fvq_hf
from fvq_hf.search import nearest_code

generator = torch.Generator().manual_seed(0)
vectors = torch.randint(-3, 4, (500, 8), generator=generator).float()
codebook = torch.randint(-3, 4, (2000, 8), generator=generator).float()
truth = (vectors.double()[:, None] - codebook.double()[None]).pow(2).sum(-1).argmin(1)
results = []
for backend in sys.argv[1:]:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found, error = nearest_code(vectors, codebook, backend=backend), None
        except ValueError as exception:
            found, error = None, str(exception)
    results.append({"right": found is not None and torch.equal(found, truth), "error": error,
                    "seconds": time.perf_counter() - start, "warnings": [str(w.message) for w in caught]})
print(json.dumps({"package": fvq_hf.__file__, "results": results}))
"""


@dataclass
class Searches:
    pid: int
    stderr: str
    package: str
    results: list[dict]

    @property
    def first(self) -> dict:
        return self.results[0]

    def builds(self) -> bool:
        return "fvq_hf: building" in self.stderr


def start(cache: Path, *backends: str, package: Path = ROOT, **env: str) -> subprocess.Popen:
    """A process that searches once per backend, with its own session (so that its compiler can be killed too)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FVQ_HF_")}
    environment.update(FVQ_HF_KERNEL_CACHE=str(cache / "kernels"), TORCH_EXTENSIONS_DIR=str(cache / "torch"),
                       PYTHONPATH=str(package), **env)
    return subprocess.Popen([sys.executable, "-c", SEARCH, *backends], env=environment, cwd=cache.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> Searches:
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the search did not finish in {TIMEOUT_S} s; its stderr:\n{err}")
    assert process.returncode == 0, err
    return Searches(process.pid, err, **json.loads(out.splitlines()[-1]))


def search(cache: Path, *backends: str, **kwargs) -> Searches:
    return finish(start(cache, *backends, **kwargs))


def copy_cache(cache: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cache, tmp_path / "cache", symlinks=True))


@dataclass
class Built:
    cache: Path
    seconds: float  # the build's time, as the search that built saw it
    searches: list[Searches]


def kill_in_its_build(cache: Path) -> None:
    """Start a search on an empty cache and kill -9 it, its compiler and ninja too, in the middle of its build."""
    process = start(cache, "kernel")
    deadline = time.monotonic() + TIMEOUT_S
    while not any(cache.rglob("build.ninja")):  # torch has written its build file: the compiler starts
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.1)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGKILL)  # the compiler and ninja too, as a job scheduler kills
    process.communicate()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """A first build killed with kill -9 in its middle, then two processes started together on that cache (the tests
    below check what they said; with torch's own lock file both waited forever); the cache they built, for the tests
    that need a built one."""
    cache = tmp_path_factory.mktemp("built") / "cache"
    cache.mkdir()
    kill_in_its_build(cache)
    processes = [start(cache, "kernel") for _ in range(2)]
    searches = [finish(process) for process in processes]  # each within TIMEOUT_S
    return Built(cache, max(s.first["seconds"] for s in searches), searches)


@pytest.mark.slow
def test_processes_started_together_build_once_and_both_search(built):
    assert all(s.first["right"] for s in built.searches), [s.first["error"] for s in built.searches]
    builders = [s for s in built.searches if s.builds()]
    assert len(builders) == 1, [s.stderr for s in built.searches]
    waiter = next(s for s in built.searches if s is not builders[0])
    # It says whom it waits for, and where.
    assert f"waiting for process {builders[0].pid} on " in waiter.stderr
    assert str(built.cache / "kernels") in waiter.stderr and "FVQ_HF_KERNEL_BUILD_TIMEOUT" in waiter.stderr
    assert "built the search kernel in " in builders[0].stderr


@pytest.mark.slow
def test_a_build_killed_at_any_moment_blocks_no_later_search(built):
    assert all(s.first["right"] for s in built.searches), [s.first["error"] for s in built.searches]
    builder = next(s for s in built.searches if s.builds())
    assert "waiting" not in builder.stderr  # the next process builds at once: no wait for the dead builder
    assert not list((built.cache / "kernels").glob("*/build-*"))  # the killed build's scratch folder is gone


@pytest.mark.slow
def test_two_copies_of_the_package_share_one_build(built, tmp_path):
    cache = copy_cache(built.cache, tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "fvq_hf", copy / "fvq_hf", ignore=shutil.ignore_patterns("__pycache__"))
    # The repository's copy built it; the copy at another path, then the repository's again: each warm.
    for package in (copy, ROOT):
        searches = search(cache, "kernel", package=package)
        assert searches.package == str(package / "fvq_hf" / "__init__.py")
        assert searches.first["right"], searches.first["error"]
        assert not searches.builds() and searches.first["seconds"] < built.seconds / 4, searches.stderr


@pytest.mark.slow
def test_a_truncated_kernel_is_rebuilt_never_loaded(built, tmp_path, monkeypatch, capfd):
    """Here, in this process: loading the truncated library would kill it (SIGBUS, as torch's cache did)."""
    cache = copy_cache(built.cache, tmp_path)
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(cache / "kernels"))
    monkeypatch.delenv("FVQ_HF_SEARCH_ISA", raising=False)
    isa = kernel.choose_isa()
    folder = kernel.kernel_folder(isa)
    manifest = json.loads((folder / "manifest.json").read_text())
    library = folder / manifest["library"]
    whole = library.read_bytes()
    os.truncate(library, len(whole) // 2)
    builds = []

    def rebuild(**kwargs):  # the rebuild gives the whole library again, without half a minute of compiling
        builds.append(kwargs["build_directory"])
        again = Path(kwargs["build_directory"]) / library.name
        again.write_bytes(whole)
        return types.SimpleNamespace(__name__=manifest["module"], __file__=str(again))

    monkeypatch.setattr(cpp_extension, "load", rebuild)
    kernel.build.load_or_build(kernel.KERNEL_SOURCE, isa, *kernel.kernel_flags(isa))
    assert len(builds) == 1 and "is damaged" in capfd.readouterr().err
    assert library.read_bytes() == whole
    searches = search(cache, "kernel")  # and the next process loads the rebuilt library, without a build
    assert searches.first["right"] and not searches.builds(), searches.stderr


@pytest.mark.slow
def test_a_verified_build_is_loaded_without_the_lock(built, tmp_path):
    # A lock that cannot be taken (a folder in its place) stands in for a read-only cache: chmod does not stop root.
    cache = copy_cache(built.cache, tmp_path)
    for lock in (cache / "kernels").glob("*.lock"):
        lock.unlink()
        lock.mkdir()
    searches = search(cache, "kernel")
    assert searches.first["right"] and "fvq_hf:" not in searches.stderr, searches.first["error"]


def fallback_and_error(searches: Searches) -> tuple[str, str]:
    """(the warning of backend "auto", the error of backend "kernel"), checking that "auto" found argmin's ids."""
    auto, required = searches.results
    assert auto["right"] and auto["error"] is None, auto["error"]
    assert required["error"] is not None
    warning = next((w for w in auto["warnings"] if "tiled torch" in w), None)
    assert warning is not None, auto["warnings"]
    return warning, required["error"]


def test_no_compiler_falls_back_with_the_reason(tmp_path):
    (tmp_path / "cache").mkdir()
    warning, error = fallback_and_error(search(tmp_path / "cache", "auto", "kernel", CXX="/nonexistent"))
    for message in (warning, error):
        assert "no C++ compiler" in message and "/nonexistent" in message, message


def test_an_unwritable_cache_falls_back_naming_the_folder(tmp_path):
    (tmp_path / "file").write_text("a file where the cache's parent folder should be")
    warning, error = fallback_and_error(search(tmp_path / "file", "auto", "kernel"))
    for message in (warning, error):
        assert str(tmp_path / "file" / "kernels") in message and "FVQ_HF_KERNEL_CACHE" in message, message


def test_a_builder_that_never_finishes_is_waited_for_a_bounded_time(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(cache / "kernels"))
    monkeypatch.delenv("FVQ_HF_SEARCH_ISA", raising=False)
    folder = kernel.kernel_folder(kernel.choose_isa())
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print(flush=True); time.sleep(120)",
                               f"{folder}.lock"], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()  # it holds the lock
        searches = search(cache, "auto", "kernel", FVQ_HF_KERNEL_BUILD_TIMEOUT="1")
    finally:
        holder.kill()
        holder.wait()
    warning, error = fallback_and_error(searches)
    assert "waiting for another process" in searches.stderr
    for message in (warning, error):
        assert "waited 1 s" in message and "FVQ_HF_KERNEL_BUILD_TIMEOUT" in message, message


@pytest.mark.parametrize(("isa", "message"), [("avx9", "Unknown search kernel ISA 'avx9'"),
                                              ("x86-64-v4", "This CPU cannot run the x86-64-v4 search kernel")])
def test_an_isa_the_cpu_cannot_run_falls_back_with_the_reason(isa, message, monkeypatch):
    monkeypatch.setattr(kernel, "cpu_flags", lambda: frozenset({"sse2"}))
    monkeypatch.setattr(kernel, "_WARNED", set(), raising=False)
    monkeypatch.setenv("FVQ_HF_SEARCH_ISA", isa)
    vectors, codebook = integer_data(100, 300, 8)
    with pytest.warns(RuntimeWarning, match=f"{message}.*tiled torch"):
        assert torch.equal(nearest_code(vectors, codebook), argmin_truth(vectors, codebook))
    with pytest.raises(ValueError, match=f"kernel cannot serve this call: {message}"):
        nearest_code(vectors, codebook, backend="kernel")


def test_the_cache_folder_is_keyed_by_source_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(tmp_path))
    flags = kernel.kernel_flags("portable")
    folder = kernel.kernel_folder("portable")
    assert folder.parent == tmp_path and folder.name.startswith("nearest_code-")
    source = tmp_path / "nearest_code.cpp"
    source.write_bytes(kernel.KERNEL_SOURCE.read_bytes())  # the same source elsewhere: the same build
    assert kernel.build.build_folder(source, "portable", *flags) == folder
    source.write_bytes(kernel.KERNEL_SOURCE.read_bytes() + b"\n// another source\n")
    assert kernel.build.build_folder(source, "portable", *flags) != folder
    assert kernel.build.build_folder(kernel.KERNEL_SOURCE, "portable", flags[0] + ["-DX"], flags[1]) != folder
    monkeypatch.delenv("FVQ_HF_KERNEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kernel.kernel_folder("portable").parent == tmp_path / "xdg" / "fvq_hf" / "kernels"


def test_a_verified_build_that_does_not_import_is_rebuilt_once(tmp_path, monkeypatch, capfd):
    # A .so that matches its manifest but is no library (as one built for another ABI): rebuilt, then given up.
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(tmp_path))
    flags = kernel.kernel_flags("portable")
    folder = kernel.kernel_folder("portable")
    folder.mkdir()
    (folder / "fvq_hf_nearest_code.so").write_bytes(b"not a library")
    manifest = {"module": "fvq_hf_nearest_code", "library": "fvq_hf_nearest_code.so",
                "sha256": hashlib.sha256(b"not a library").hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    calls = []

    def load(**kwargs):
        calls.append(kwargs["build_directory"])
        raise RuntimeError("the rebuild failed too")

    monkeypatch.setattr(cpp_extension, "load", load)
    with pytest.raises(kernel.build.KernelBuildError, match="could not build its search kernel .the rebuild failed"):
        kernel.build.load_or_build(kernel.KERNEL_SOURCE, "portable", *flags)
    assert len(calls) == 1 and "fvq_hf_nearest_code.so does not load" in capfd.readouterr().err
    assert not any(folder.glob("build-*"))  # its scratch folder is gone


def test_the_processes_that_waited_for_a_failed_build_give_up_with_its_reason(tmp_path, monkeypatch):
    """N processes of a launch with a broken compiler fail once, not N times in a row: one that waited while the
    build failed does not build again (a process that comes later does: a compiler may have been installed)."""
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(tmp_path))
    folder = kernel.kernel_folder("portable")
    real_lock = kernel.build._build_lock

    @contextlib.contextmanager
    def lock_after_a_failed_build(path):
        with real_lock(path):  # the builder this process waited for failed meanwhile and wrote why
            (path / "failed.json").write_text(json.dumps({"error": "boom: the builder's reason", "time": time.time()}))
            yield

    def load(**kwargs):
        raise AssertionError("a process that waited for a failed build must not build again")

    monkeypatch.setattr(kernel.build, "_build_lock", lock_after_a_failed_build)
    monkeypatch.setattr(cpp_extension, "load", load)
    with pytest.raises(kernel.build.KernelBuildError, match="boom: the builder's reason"):
        kernel.build.load_or_build(kernel.KERNEL_SOURCE, "portable", *kernel.kernel_flags("portable"))
    assert folder.is_dir()


def test_a_failed_build_says_why_to_the_processes_that_waited(tmp_path, monkeypatch):
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(tmp_path))
    folder = kernel.kernel_folder("portable")

    def load(**kwargs):
        raise RuntimeError("nearest_code.cpp:1:1: error: boom")

    monkeypatch.setattr(cpp_extension, "load", load)
    with pytest.raises(kernel.build.KernelBuildError, match="error: boom"):
        kernel.build.load_or_build(kernel.KERNEL_SOURCE, "portable", *kernel.kernel_flags("portable"))
    assert "error: boom" in json.loads((folder / "failed.json").read_text())["error"]


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_build_timeout_that_is_no_number_of_seconds_is_refused(value, tmp_path, monkeypatch):
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("FVQ_HF_KERNEL_BUILD_TIMEOUT", value)
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: pytest.fail("no build without a lock"))
    with pytest.raises(kernel.build.KernelBuildError, match=f"FVQ_HF_KERNEL_BUILD_TIMEOUT={value!r} is not a number"):
        kernel.build.load_or_build(kernel.KERNEL_SOURCE, "portable", *kernel.kernel_flags("portable"))
