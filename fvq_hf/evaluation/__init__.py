"""Honest tokenizer metrics, above the models they measure: a registry of metrics (`metrics`), codebook usage and its
files (`usage`), the options an evaluation takes (`options`), and the evaluation loop that measures every registered
metric over every token of a data set (`evaluate`: `fvq-eval`, and `fvq-train`'s evaluation).

Nothing is imported here: a pipeline reads one image's usage (`usage`) without loading the metrics.
"""
