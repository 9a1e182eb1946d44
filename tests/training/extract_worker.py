"""Run by tests under `torch.distributed.run`: `fvq-extract-codes` with the given flags, then this rank's line."""

import sys

from accelerate import PartialState

from fvq_hf.cli.extract_codes import main

if __name__ == "__main__":
    main(sys.argv[1:])
    state = PartialState()
    sys.stdout.write(f"RANK {state.process_index} WORLD {state.num_processes}\n")
