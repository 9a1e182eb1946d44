"""Telling a local folder from a hub id before any Hub request is made; writing a folder all at once."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def looks_like_local_path(name: str | os.PathLike) -> bool:
    """Whether a model name that is not an existing folder was meant as one (so "no such folder" is the error to
    give, not a Hub lookup failure): it starts with `.`, `/` or `~`, has more than one `/`, or its first part is
    an existing folder (`outputs/typo`, `hub_configs/typo`). `org/name` is taken for a hub id."""
    text = str(name)
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep in text.replace("/", "")
            or Path(text.split("/")[0]).is_dir() and "/" in text)


def refuse_missing_folder(name: str | os.PathLike, what: str = "model") -> None:
    """Raise FileNotFoundError for a name meant as a local folder that does not exist, before any Hub request
    (whose retries would take half a minute and end in a network message)."""
    if not os.path.isdir(name) and looks_like_local_path(name):
        raise FileNotFoundError(f"No {what} folder at {name}: that path does not exist (check the path; for a hub "
                                "id use org/name).")


def refuse_existing(folder: str | os.PathLike, overwrite: bool, flag: str = "--overwrite") -> None:
    """A FileExistsError for an existing file or non-empty folder unless `overwrite` (call it before the work)."""
    path = Path(folder)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not overwrite:
        raise FileExistsError(f"{path} exists; choose another output or pass {flag} to replace it.")


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite") -> Iterator[Path]:
    """Write a folder all at once: the body writes into a hidden sibling (`.tmp-<name>-<pid>`), renamed to `folder`
    when it ends without an error. A crash or an error leaves `folder` as it was and no partial one (the sibling is
    removed on an error; a killed process leaves it, hidden, to delete). A non-empty `folder` is refused (a
    FileExistsError naming `flag`) before the body runs unless `overwrite`, which replaces it as a whole (between its
    removal and the rename there is none)."""
    final = Path(folder)
    refuse_existing(final, overwrite, flag)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    elif final.exists() or final.is_symlink():
        final.unlink()
    os.replace(tmp, final)
