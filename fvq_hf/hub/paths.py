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


def refuse_existing(folder: str | os.PathLike, overwrite: bool, flag: str = "--overwrite",
                    replaceable: tuple[str, ...] = ()) -> None:
    """Call before the work. A FileExistsError for an existing file or non-empty folder unless `overwrite`; with it,
    a non-empty folder that holds none of the `replaceable` entries (what this command writes, e.g. `config.json`)
    is refused too: `overwrite` replaces an earlier output, never an unrelated folder."""
    path = Path(folder)
    if not path.exists() or path.is_dir() and not any(path.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists; choose another output or pass {flag} to replace it.")
    if replaceable and not (path.is_dir() and any((path / name).exists() for name in replaceable)):
        raise FileExistsError(f"{path} exists and is not an earlier output of this command (it holds none of "
                              f"{', '.join(replaceable)}); {flag} replaces only those: choose another output.")


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite",
                  replaceable: tuple[str, ...] = ()) -> Iterator[Path]:
    """Write a folder all at once: the body writes into a hidden sibling (`.tmp-<name>-<pid>`, made empty), renamed
    to `folder` when it ends without an error. An error removes the sibling and leaves `folder` as it was; a killed
    process leaves `folder` as it was and the hidden sibling to delete. An existing `folder` is checked first
    (`refuse_existing`); with `overwrite` it is moved aside (`.old-<name>-<pid>`), the new one renamed in, and the
    old one deleted: at every moment the old or the new folder exists whole, under its name or (for the instant
    between the renames, or if the deletion is cut short) the hidden one."""
    final = Path(folder).resolve()
    refuse_existing(final, overwrite, flag, replaceable)
    tmp, aside = (final.with_name(f".{kind}-{final.name}-{os.getpid()}") for kind in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists() or final.is_symlink():
            os.replace(final, aside)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    elif aside.exists() or aside.is_symlink():
        aside.unlink()
