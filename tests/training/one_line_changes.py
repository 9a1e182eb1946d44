"""The one-line changes of tests/training/README.md, made one at a time: each is written into the source, the test
file that should catch it runs, and the source is restored (also on Ctrl-C). Prints what failed.

    python tests/training/one_line_changes.py          # all (about 2 min on 2 cores)
    python tests/training/one_line_changes.py 2 3      # some, by position
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INIT_TESTS = "tests/bridges/test_initialisation_is_theirs.py"
# (what the change does, the file, the line as it is, the line changed, the tests that should fail)
CHANGES = [
    ("the DiT label embedding at std 0.025", "fvq_hf/bridges/dit.py",
     "nn.init.normal_(self.label_embed.weight, std=0.02)", "nn.init.normal_(self.label_embed.weight, std=0.025)",
     INIT_TESTS),
    ("no xavier init of the bridges' Linears", "fvq_hf/bridges/vqbridge.py",
     "            nn.init.xavier_uniform_(module.weight)", "            pass", INIT_TESTS),
    ("the EMA decay hard-coded to 0.9999 (--ema-decay ignored)", "fvq_hf/training/ema.py",
     "return EMAModel(model.parameters(), decay=decay)\n", "return EMAModel(model.parameters(), decay=0.9999)\n",
     "tests/training/test_ema.py"),
    ("--no-ema-warmup ignored", "fvq_hf/training/ema.py", "    if warmup:\n", "    if True:\n",
     "tests/training/test_ema.py"),
    ("--quantizer-precision not passed to the model", "fvq_hf/training/trainer.py",
     "        model.set_quantizer_precision(config.quantizer_precision)", "        pass",
     "tests/training/test_trainer.py::test_quantizer_precision_reaches_the_quantizer_of_a_bf16_run"),
    ("quantizer_precision='autocast' searching in fp32", "fvq_hf/quantizers/base.py",
     "        if self.under_autocast(vectors.device.type):\n            return autocast_search",
     "        if False:\n            return autocast_search", "tests/training/test_parity_with_authors.py"),
    ("the DiT bridge's label dropout never drawn", "fvq_hf/bridges/dit.py",
     "dropped = torch.rand(batch_size, device=device) < config.label_dropout",
     "dropped = torch.rand(batch_size, device=device) < 0", "tests/quantizers/test_label_dropout.py"),
    ("one codebook for every image under label_rule='dropout'", "fvq_hf/quantizers/base.py",
     "parts = [self.quantize_images(latents[images], label) for label, images in groups]",
     "parts = [self.quantize_images(latents[images]) for label, images in groups]",
     "tests/quantizers/test_label_dropout.py"),
]


def main(chosen: list[str]) -> None:
    for position, (what, path, line, changed, tests) in enumerate(CHANGES):
        if chosen and str(position) not in chosen:
            continue
        source = ROOT / path
        original = source.read_text()
        if original.count(line) != 1:
            raise SystemExit(f"{path} no longer holds the line of change {position} ({what}): update this list.")
        try:
            source.write_text(original.replace(line, changed))
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests], cwd=ROOT,
                                 capture_output=True, text=True)
        finally:
            source.write_text(original)
        failed = [row.split(" - ")[0] for row in run.stdout.splitlines() if row.startswith("FAILED")]
        print(f"{position}. {what}: {'caught' if failed else 'NOT CAUGHT'} ({run.stdout.splitlines()[-1]})")
        for row in failed:
            print("    ", row)


if __name__ == "__main__":
    main(sys.argv[1:])
