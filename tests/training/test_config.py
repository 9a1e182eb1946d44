"""The training library's interface is typed configs: the command line only builds them (its defaults are the
configs' own), Python runs them directly, and no library function takes an argparse Namespace."""

import ast
import dataclasses

import pytest

from fvq_hf.cli import train as train_command
from fvq_hf.cli import train_transformer as transformer_command
from fvq_hf.data.spec import DataSpec
from fvq_hf.evaluation.options import EvaluationOptions
from fvq_hf.training import (
    LoopConfig,
    LossConfig,
    TrainConfig,
    TransformerTrainConfig,
    train,
    transformer_loop,
)

from ..helpers import ROOT
from .runs import tiny_config, train_args


def test_the_commands_defaults_are_the_configs_defaults():
    assert train_command.build_config(["--config", "c"]) == TrainConfig(config="c")
    assert transformer_command.build_config(["--config", "c", "--codes", "d"]) == \
        TransformerTrainConfig(config="c", codes="d")
    assert TransformerTrainConfig(config="c", codes="d").loop == transformer_loop() != LoopConfig()


def test_each_flag_sets_its_field():
    config = train_command.build_config([
        "--config", "c", "--data", "hf:photos:test", "--streaming", "--max-steps", "5", "--lr", "0.1",
        "--disc-start", "3", "--disc-weight", "0.25", "--reconstruction-weight", "2", "--perceptual-weight", "0.5",
        "--lpips-vgg", "v.pth", "--inception-weights", "i.pth", "--eval-batch-size", "4",
        "--eval-data", "builtin:unseen", "--eval-every", "2", "--ema-decay", "0.9", "--no-ema-warmup", "--batch-size", "2",
        "--output-dir", "o", "--image-column", "picture", "--quantizer-precision", "autocast",
        "--init-table", "t.safetensors", "--reconstruction-loss", "l1", "--disc-adaptive", "--disc-layers", "2",
        "--disc-fakes", "updated", "--perceptual-dropout", "0.5", "--adam-eps", "1e-7", "--max-grad-norm", "inf"])
    assert config.data == DataSpec("hf:photos:test", "hub", "photos", "test", True) and config.streaming
    assert (config.loop.max_steps, config.loop.lr, config.loop.batch_size, config.loop.output_dir) == (5, 0.1, 2, "o")
    assert config.loss == LossConfig(reconstruction_weight=2.0, perceptual_weight=0.5, disc_weight=0.25, disc_start=3,
                                     reconstruction_loss="l1", disc_adaptive=True, disc_layers=2, disc_fakes="updated",
                                     perceptual_dropout=0.5)
    assert (config.loop.adam_eps, config.loop.max_grad_norm) == (1e-7, float("inf"))
    assert config.ema_decay == 0.9 and not config.ema_warmup and config.quantizer_precision == "autocast"
    assert config.init_table == "t.safetensors"
    assert config.eval_data == ["builtin:unseen"] and config.eval_every == 2
    assert config.evaluation.weights == {"lpips_vgg": "v.pth", "inception_weights": "i.pth"}
    assert (config.evaluation.batch_size, config.evaluation.image_column) == (4, "picture")
    assert config == TrainConfig(  # the same run written in Python: the image column serves the evaluation too
        config="c", data="hf:photos:test", streaming=True, image_column="picture", eval_data=["builtin:unseen"],
        eval_every=2, ema_decay=0.9, ema_warmup=False, quantizer_precision="autocast", init_table="t.safetensors",
        loop=LoopConfig(max_steps=5, lr=0.1, batch_size=2, output_dir="o", adam_eps=1e-7, max_grad_norm=float("inf")),
        loss=LossConfig(reconstruction_weight=2.0, perceptual_weight=0.5, disc_weight=0.25, disc_start=3,
                        reconstruction_loss="l1", disc_adaptive=True, disc_layers=2, disc_fakes="updated",
                        perceptual_dropout=0.5),
        evaluation=EvaluationOptions(batch_size=4, weights={"lpips_vgg": "v.pth", "inception_weights": "i.pth"}))


def test_each_flag_of_the_transformer_command_sets_its_field():
    config = transformer_command.build_config([
        "--config", "c", "--codes", "d", "--eval-codes", "e", "--tokenizer", "t", "--init-weights",
        "--weight-decay", "0.1", "--class-dropout", "0.2", "--sample-guidance", "2", "--eval-batch-size", "8",
        "--max-steps", "3"])
    assert config == TransformerTrainConfig(config="c", codes="d", eval_codes="e", tokenizer="t", init_weights=True,
                                            weight_decay=0.1, class_dropout=0.2, sample_guidance=2.0,
                                            eval_batch_size=8, loop=transformer_loop(max_steps=3))


def test_every_loop_field_has_its_flag_in_both_commands():
    fields = {f.name for f in dataclasses.fields(LoopConfig)}
    for command, required in ((train_command, ["--config", "c"]),
                              (transformer_command, ["--config", "c", "--codes", "d"])):
        assert fields <= set(vars(command.build_parser().parse_args(required)))


@pytest.mark.parametrize(("make", "match"), [
    (lambda: LoopConfig(schedule="cosine"), "--schedule 'cosine': choose one of lin, const, cos"),
    (lambda: LoopConfig(lr=0.0), "--lr must be > 0"),
    (lambda: LoopConfig(max_steps=0), "--max-steps must be >= 1"),
    (lambda: LoopConfig(adam_eps=0.0), "--adam-eps must be > 0"),
    (lambda: LoopConfig(max_grad_norm=0.0), r"--max-grad-norm must be > 0 \(inf: no clipping\)"),
    (lambda: LossConfig(disc_layers=0), "--disc-layers must be >= 1"),
    (lambda: LossConfig(disc_fakes="fresh"), "--disc-fakes 'fresh': choose one of step, updated"),
    (lambda: LossConfig(perceptual_dropout=1.0), r"--perceptual-dropout must lie in \[0, 1\)"),
    (lambda: TrainConfig(config="c", data="builtin:nowhere"), "Unknown builtin split 'nowhere'"),
    (lambda: TrainConfig(config="c", data="builtin", streaming=True), "--streaming reads hf:<name> or tar shards"),
    (lambda: TrainConfig(config="c", eval_every=0), "--eval-every must be >= 1"),
    (lambda: TrainConfig(config="c", quantizer_precision="bf16"), "--quantizer-precision 'bf16': choose one of"),
    (lambda: TransformerTrainConfig(config="c", codes="d", class_dropout=1.0), "--class-dropout must lie in"),
])
def test_a_bad_value_is_refused_when_the_config_is_made(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_builtin_data_is_evaluated_on_its_heldout_and_unseen_photos_by_default(tmp_path):
    assert TrainConfig(config="c").eval_data == ["builtin:heldout", "builtin:unseen"]
    assert TrainConfig(config="c", data=str(tmp_path)).eval_data == []


def test_train_from_python_prints_the_table_of_fvq_train(tmp_path, capsys):
    """The same short run, once from the command line and once from Python with a config object."""
    data = str(tmp_path / "images")
    argv = [*train_args(tmp_path, "--max-steps", "2", "--eval-data", data), "--output-dir", str(tmp_path / "cli")]
    train_command.main(argv)
    printed = capsys.readouterr().out.strip()
    result = train(tiny_config(tmp_path, max_steps=2, eval_data=[data], output_dir=str(tmp_path / "python")))
    assert "| data |" in printed and result.table() == printed


def test_no_library_function_takes_an_argparse_namespace():
    """Only the command line (fvq_hf/cli) parses arguments: below it no parameter is a Namespace or named `args`,
    and only the conversion imports argparse, to read the `args` Namespace that the original training scripts
    pickled into their checkpoints, as data."""
    readers = {"fvq_hf/conversion/loader.py"}
    for path in sorted((ROOT / "fvq_hf").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name.startswith("fvq_hf/cli/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                    assert "Namespace" not in ast.unparse(arg.annotation or ast.Constant("")), (name, node.name)
                    assert arg.arg != "args", (name, node.name)
            if isinstance(node, ast.Import | ast.ImportFrom) and name not in readers:
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert "argparse" not in modules, name
