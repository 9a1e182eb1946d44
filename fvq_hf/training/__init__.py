"""Training: typed run configs (`config`), learning annealing (`schedule`), the shared accelerate runtime (`runtime`),
and the loops of `fvq-train` (`trainer`: a tokenizer) and `fvq-train-transformer` (`transformer_trainer`: the
autoregressive prior).

    from fvq_hf.training import LoopConfig, TrainConfig, train

    result = train(TrainConfig(config="hub_configs/fvq-cpu-4k", data="builtin",
                               loop=LoopConfig(output_dir="outputs/fvq-cpu-4k", max_steps=600, lr=3e-4)))
    print(result.table())
"""

from .config import LoopConfig, LossConfig, TrainConfig, TransformerTrainConfig, transformer_loop
from .schedule import SCHEDULES, annealing_factor
from .trainer import TrainResult, train

__all__ = ["SCHEDULES", "LoopConfig", "LossConfig", "TrainConfig", "TrainResult", "TransformerTrainConfig",
           "annealing_factor", "train", "transformer_loop"]
