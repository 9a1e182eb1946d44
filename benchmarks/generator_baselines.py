"""Reference points for a generator's held-out next-token loss (issue 7), from codes folders alone.

A transformer's loss means little alone. This script gives what simpler models of the same tokens get on
the same held-out codes (every view, every token, in nats):
- uniform over the K codes: ln K;
- code frequencies of the training codes (add-one smoothing), ignoring the class;
- per-class code frequencies (add-one smoothing): all a model learns if it ignores where a token is.

    python benchmarks/generator_baselines.py --codes outputs/codes-cpu-4k --eval-codes outputs/codes-cpu-4k-heldout
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from fvq_hf.data.tokens import TokenDataset


def samples(folder: str) -> tuple[TokenDataset, np.ndarray, np.ndarray]:
    """A codes folder's dataset, its tokens `(N, views * h * w)` and labels `(N,)`."""
    data = TokenDataset(folder)
    tokens = np.concatenate([np.asarray(c, dtype=np.int64).reshape(len(c), -1) for c in data.codes])
    return data, tokens, np.concatenate([np.asarray(labels) for labels in data.labels])


def frequencies(tokens: np.ndarray, size: int) -> np.ndarray:
    """Add-one smoothed code probabilities `(size,)`."""
    counts = np.bincount(tokens.ravel(), minlength=size) + 1.0
    return counts / counts.sum()


def baselines(codes: str, eval_codes: str) -> dict:
    train, tokens, labels = samples(codes)
    held, held_tokens, held_labels = samples(eval_codes)
    if (train.codebook_size, train.meta.class_names) != (held.codebook_size, held.meta.class_names):
        raise ValueError(f"{codes} and {eval_codes} come from different tokenizers or classes.")
    size = train.codebook_size
    per_class = np.concatenate([
        -np.log(frequencies(tokens[labels == k], size)[held_tokens[held_labels == k]]).ravel()
        for k in range(train.num_classes) if (held_labels == k).any()
    ])
    return {"num_tokens": int(held_tokens.size), "uniform": math.log(size),
            "code_frequencies": float(-np.log(frequencies(tokens, size)[held_tokens]).mean()),
            "per_class_code_frequencies": float(per_class.mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", required=True, help="training codes folder")
    parser.add_argument("--eval-codes", required=True, help="held-out codes folder")
    args = parser.parse_args(argv)
    results = baselines(args.codes, args.eval_codes)
    print("| model | loss (nats) | perplexity |")
    print("| --- | --- | --- |")
    for key in ("uniform", "code_frequencies", "per_class_code_frequencies"):
        print(f"| {key.replace('_', ' ')} | {results[key]:.3f} | {math.exp(results[key]):,.0f} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
