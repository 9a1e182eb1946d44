"""Telling a local folder from a hub id before any Hub request is made."""

from __future__ import annotations

import os
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
