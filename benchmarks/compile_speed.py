"""What `fvq-train --compile` gains: seconds per step with and without it, and the time the first steps take to
compile. Each run is `fvq-train` itself (the main job's recipe: fvq-cpu-4k on the builtin photos), in a fresh
process; a step's time is read from the log line the loop writes after it (`--log-every 1`).

    python benchmarks/compile_speed.py                     # 40 steps each (a few minutes on 2 CPU cores)
    python benchmarks/compile_speed.py --steps 10 --quick  # a smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import in_fresh_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARM = 5  # steps left out of the steady-state figure (compilation, recompilation, allocator warm-up)


def _run(compile: bool, steps: int, batch_size: int) -> dict:
    from fvq_hf.training import LoopConfig, TrainConfig, train

    ends: list[float] = []

    class StepTimes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("step "):
                ends.append(record.created)

    logging.getLogger("fvq_hf.training.runtime").addHandler(StepTimes())
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        loop = LoopConfig(output_dir=out, lr=3e-4, max_steps=steps, log_every=1, report_to="none", compile=compile,
                          batch_size=batch_size)
        train(TrainConfig(config=str(ROOT / "hub_configs" / "fvq-cpu-4k"), data="builtin", eval_data=[], loop=loop))
    times = [b - a for a, b in zip([start, *ends], ends)]
    return {"compile": compile, "steps": steps, "first_steps_s": [round(t, 3) for t in times[:3]],
            "steady_s_per_step": statistics.median(times[WARM:]), "total_s": round(ends[-1] - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="batch 4 instead of the main job's 16")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    if args.steps <= WARM:
        parser.error(f"--steps must exceed {WARM}")
    batch_size = 4 if args.quick else 16
    rows = [in_fresh_process(_run, compile, args.steps, batch_size) for compile in (False, True)]
    eager, compiled = rows
    compiled["compile_time_s"] = round(compiled["total_s"] - eager["total_s"]
                                       - (compiled["steady_s_per_step"] - eager["steady_s_per_step"]) * args.steps, 1)
    compiled["speed_up"] = round(eager["steady_s_per_step"] / compiled["steady_s_per_step"], 3)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
