"""Build a C++ search kernel once per machine and source, and load it: safely with many processes, killed ones too.

The kernel is built at first use by `torch.utils.cpp_extension.load` (building it at install would need torch in
pip's isolated build environment, which fetches a CUDA torch). Torch's own cache is unsafe to share: its lock is a
file made with O_EXCL that a killed builder never removes (every later process then waits forever), and its
folder is named by the module alone (two copies of the package rebuild each other's build). So builds live here:

- a cache root, `$FVQ_HF_KERNEL_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/fvq_hf/kernels`, with one folder per
  build key, `<source stem>-<machine>-<isa>-<key16>`: the key hashes the source, the flags, torch's version, the
  Python ABI, the machine and `$CXX`, so copies of one source share a build and other sources never touch it;
- a finished build is `<module>.so` and `manifest.json` (the module's name, the .so's sha256), each written under a
  temporary name and renamed, the manifest last. A verified build loads without any lock (a read-only cache
  serves); a .so that does not match its manifest is never loaded, but rebuilt;
- a build holds `<folder>.lock`, an flock (filelock) that the OS releases when its holder dies, and compiles in a
  fresh `build-<pid>-<random>` folder, so torch's own lock file is never seen by another process. Others wait at
  most `$FVQ_HF_KERNEL_BUILD_TIMEOUT` seconds (600), saying on stderr whom they wait for, then load its build.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch
from filelock import FileLock, Timeout

CACHE_ENV = "FVQ_HF_KERNEL_CACHE"
TIMEOUT_ENV = "FVQ_HF_KERNEL_BUILD_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
MANIFEST = "manifest.json"
BUILDER = "builder.json"  # who builds now: for the message of a process that waits
FAILED = "failed.json"  # why the last build failed: the processes that waited for it give up with that reason


class KernelBuildError(RuntimeError):
    """The kernel can be neither loaded nor built; the message says why and what to do."""


def say(message: str) -> None:
    """One line on stderr. Written there directly, as tqdm writes its bars: half a minute of building or waiting
    must be visible in a notebook or a script that configured no logging."""
    sys.stderr.write(f"fvq_hf: {message}\n")
    sys.stderr.flush()


def cache_root() -> Path:
    """`$FVQ_HF_KERNEL_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/fvq_hf/kernels`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fvq_hf" / "kernels"


def build_folder(source: Path, isa: str, cflags: Sequence[str], ldflags: Sequence[str]) -> Path:
    """The folder that holds the build of `source` for `isa` with these flags, on this machine and torch."""
    key = hashlib.sha256(source.read_bytes())
    key.update(json.dumps([list(cflags), list(ldflags), torch.__version__, sys.implementation.cache_tag,
                           platform.machine(), os.environ.get("CXX", "")]).encode())
    return cache_root() / f"{source.stem}-{platform.machine().lower()}-{isa}-{key.hexdigest()[:16]}"


def load_or_build(source: Path, isa: str, cflags: Sequence[str], ldflags: Sequence[str]) -> ModuleType:
    """The extension module built from `source` for `isa`: loaded from its cache folder, built there first where the
    folder holds no verified build (one builder per folder at a time). KernelBuildError where it can be neither."""
    folder = build_folder(source, isa, cflags, ldflags)
    tried = _finished_build(folder)  # the common case: no lock, no write
    if tried is not None and (module := _import(tried)) is not None:
        return module
    asked = time.time()
    try:
        with _build_lock(folder):
            build = _finished_build(folder)
            # built meanwhile by the process this one waited for; one that did not import here is rebuilt, once
            if build is not None and build != tried and (module := _import(build)) is not None:
                return module
            if build is None and (failed := _failed_since(folder, asked)):
                # The build this process waited for failed: the N processes of a launch fail once, not N times
                # in a row. A later process tries again (a compiler may have been installed since).
                raise KernelBuildError(failed)
            if build is None and (folder / MANIFEST).exists():
                say(f"the cached kernel in {folder} is damaged (its .so does not match {MANIFEST}); rebuilding it")
            try:
                return _build(folder, source, isa, cflags, ldflags)
            except KernelBuildError as error:
                _publish_text(folder, FAILED, json.dumps({"error": str(error), "time": time.time()}))
                raise
    except OSError as error:
        raise KernelBuildError(f"fvq_hf cannot write its kernel cache {folder} ({error}); point ${CACHE_ENV} at a "
                               "writable folder") from error


class FinishedBuild(NamedTuple):
    module: str  # the extension module's name (its PyInit_ symbol)
    library: Path
    sha256: str


def _finished_build(folder: Path) -> FinishedBuild | None:
    """The finished build in `folder`; None where there is none, or where its .so is not the file its manifest names
    (truncated, overwritten): such a file is never loaded."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        library = folder / manifest["library"]
        if hashlib.sha256(library.read_bytes()).hexdigest() == manifest["sha256"]:
            return FinishedBuild(manifest["module"], library, manifest["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _import(build: FinishedBuild) -> ModuleType | None:
    """The extension module of a verified build (not through sys.path: the cache is no package); None, said on
    stderr, where it does not import."""
    loader = importlib.machinery.ExtensionFileLoader(build.module, str(build.library))
    try:
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(build.module, loader))
        loader.exec_module(module)
    except ImportError as error:
        say(f"the cached kernel {build.library} does not load ({error}); rebuilding it")
        return None
    return module


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Hold `<folder>.lock`; where another process holds it for more than a moment, say on stderr whom this one
    waits for, and wait at most `$FVQ_HF_KERNEL_BUILD_TIMEOUT` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder.with_name(f"{folder.name}.lock"))
    timeout = _timeout()
    try:
        # A moment first, quietly: a holder that only checks a finished build is gone by then, and a builder has
        # written who it is.
        lock.acquire(timeout=min(timeout, 1.0))
    except Timeout:
        builder = _builder(folder)
        say(f"waiting for {builder} to build the search kernel in {folder} (at most {timeout:.0f} s, "
            f"${TIMEOUT_ENV})")
        try:
            lock.acquire(timeout=max(timeout - 1.0, 0.0))
        except Timeout:
            raise KernelBuildError(f"fvq_hf waited {timeout:.0f} s for {builder} to build its search kernel in "
                                   f"{folder}. If that process is stuck, stop it; or allow longer with "
                                   f"${TIMEOUT_ENV}") from None
    try:
        yield
    finally:
        lock.release()


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV) or str(DEFAULT_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # a negative timeout would make filelock wait forever
        raise KernelBuildError(f"${TIMEOUT_ENV}={value!r} is not a number of seconds >= 0")
    return seconds


def _failed_since(folder: Path, since: float) -> str | None:
    """The reason of a build that failed in `folder` after `since` (while this process waited), else None."""
    try:
        failed = json.loads((folder / FAILED).read_text())
        return str(failed["error"]) if failed["time"] >= since else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _builder(folder: Path) -> str:
    """Who holds the lock, in words, from the file the builder wrote (it may not have written it yet)."""
    try:
        builder = json.loads((folder / BUILDER).read_text())
        return f"process {builder['pid']} on {builder['host']} (building for {time.time() - builder['started']:.0f} s)"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _build(folder: Path, source: Path, isa: str, cflags: Sequence[str], ldflags: Sequence[str]) -> ModuleType:
    """Compile in a fresh scratch folder, then publish the .so and its manifest. The caller holds the lock."""
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX") or "c++"  # what torch calls
    if shutil.which(compiler) is None:
        raise KernelBuildError(f"fvq_hf could not build its search kernel: no C++ compiler ({compiler!r}"
                               f"{', from $CXX,' if os.environ.get('CXX') else ''} is not found; install one, e.g. "
                               "g++, or point $CXX at one)")
    _find_pip_ninja()
    for stale in folder.glob("build-*"):  # left by killed builders: no other process builds here while we hold
        shutil.rmtree(stale, ignore_errors=True)
    scratch = folder / f"build-{os.getpid()}-{secrets.token_hex(4)}"
    scratch.mkdir()
    start = time.perf_counter()
    try:
        (scratch / BUILDER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                  "started": time.time()}))
        _publish(scratch / BUILDER, folder / BUILDER)
        say(f"building the nearest-code search kernel for {isa} in {folder} (about half a minute, once per machine "
            "and kernel source; fvq-build-kernels, or python -m fvq_hf.cli.build_kernels, builds it ahead of time)")
        name = f"fvq_hf_{source.stem}_{platform.machine().lower()}_{isa.replace('-', '_')}"
        try:
            module = cpp_extension.load(name=name, sources=[str(source)], extra_cflags=list(cflags),
                                        extra_ldflags=list(ldflags), build_directory=str(scratch))
        except Exception as error:  # no ninja, a compiler error, a failed link: the compiler's words say which
            lines = str(error).strip().splitlines() or [type(error).__name__]
            reason = next((line.strip() for line in lines if "error:" in line), lines[0])[:300]
            raise KernelBuildError(f"fvq_hf could not build its search kernel ({reason})") from error
        # A process that built this module before gets `<name>_v1` from torch: take the name and file it returns.
        # (Moving the loaded .so leaves its mapping in this process as it is.)
        library = Path(module.__file__)
        sha256 = hashlib.sha256(library.read_bytes()).hexdigest()
        (scratch / MANIFEST).write_text(json.dumps({
            "module": module.__name__, "library": library.name, "sha256": sha256, "isa": isa, "flags": list(cflags),
            "torch": torch.__version__, "source": str(source),
            "seconds": round(time.perf_counter() - start, 1)}, indent=1))
        _publish(library, folder / library.name)
        _publish(scratch / MANIFEST, folder / MANIFEST)  # last: it says the build is done
        (folder / FAILED).unlink(missing_ok=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        (folder / BUILDER).unlink(missing_ok=True)
    say(f"built the search kernel in {time.perf_counter() - start:.0f} s: {folder}")
    return module


def _publish_text(folder: Path, name: str, text: str) -> None:
    """`folder/name` written whole or not at all (a temporary name in the same folder, then renamed)."""
    temporary = folder / f".{name}.{os.getpid()}-{secrets.token_hex(4)}"
    temporary.write_text(text)
    _publish(temporary, folder / name)


def _publish(temporary: Path, path: Path) -> None:
    """Move a finished file into place whole or not at all: synced, then renamed over `path` (one file system)."""
    with open(temporary, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _find_pip_ninja() -> None:
    """Torch calls `ninja` by name: put the one pip installed on PATH when the venv is not (not activated)."""
    if shutil.which("ninja") is None:
        try:
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
        except ImportError:
            pass  # then the build fails, and its message says that ninja is missing
