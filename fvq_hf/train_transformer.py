"""`python -m fvq_hf.train_transformer` / `accelerate launch -m fvq_hf.train_transformer`: transformer training."""

from .training.transformer_trainer import main

if __name__ == "__main__":
    main()
