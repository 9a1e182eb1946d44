"""The measured metrics kept next to trained weights, so that a later push puts them in the model card:
`evaluation.json`, written by the trainers (`save_evaluation`) and read by the models' `model_card` (`load_evaluation`).

    {"training": str | null,                        # the run's summary, as the card's "Training" section
     "evaluations": {data: {key: value, ...}}}      # per evaluated data set, the results (keys: `hub.reports`)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

EVALUATION_FILE = "evaluation.json"


def save_evaluation(folder: str | os.PathLike, evaluations: Mapping[str, Mapping],
                    training: str | None = None) -> None:
    """Keep measured metrics (and the training summary) next to the weights in `folder`."""
    Path(folder, EVALUATION_FILE).write_text(json.dumps({"training": training, "evaluations": evaluations}, indent=2))


def load_evaluation(folder: str | os.PathLike | None) -> tuple[dict | None, str | None]:
    """`(evaluations, training summary)` saved by `save_evaluation` in `folder`, or `(None, None)`."""
    path = Path(folder, EVALUATION_FILE) if folder else None
    if path is None or not path.is_file():
        return None, None
    saved = json.loads(path.read_text())
    return saved.get("evaluations") or None, saved.get("training")
