"""`python -m fvq_hf.train` / `accelerate launch -m fvq_hf.train`: the training entry point."""

from .training.trainer import main

if __name__ == "__main__":
    main()
