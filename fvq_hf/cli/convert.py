"""`fvq-convert`: a checkpoint of the original FVQ / LlamaGen / VAR / VQGAN-LC tokenizer code -> an `FVQModel` folder.

    fvq-convert runs/fvq/0400000.pt --output converted/fvq-16k --fold
    fvq-convert FoundationVision/LlamaGen --filename vq_ds16_c2i.pt --output converted/llamagen-vq16
    fvq-convert FoundationVision/var --filename vae_ch160v4096z32.pth --output converted/var-vae
    fvq-convert vqgan-lc-100K-f16-dim8.pth --output converted/vqgan-lc-100k-f16
    fvq-convert dit-lc-100K-f16.pth --generator dit --output converted/dit-lc-100k-f16

A thin command line over `FVQModel.from_original_checkpoint` (see `fvq_hf.conversion.layouts` for the
layouts it reads). It writes `save_pretrained` files plus `original_checkpoint.json` (where the weights came
from, which entry, the l2-norm rule and why), which `fvq-publish --converted` puts in the model card.

With `--generator dit|sit|auto` the file is a latent generator of VQGAN-LC (DiT-LC, SiT-LC; any facebookresearch DiT /
SiT checkpoint), converted by `fvq_hf.diffusion.conversion.convert_latent_generator` into `<output>/transformer` (a
`TimeMappedDiTTransformer2DModel`) and `<output>/scheduler` (DiT: DDPM, learned-range variance; SiT: flow-matching
Euler); `auto` reads the kind off the file's args. `--weights` picks the entry (auto: ema, then model), `--num-heads`
gives the heads of a model that is none of their presets.

The options of the layouts (a DiT bridge's `--dit-label`, a transformer bridge's `--num-heads`, `--keep-bridge` for a
DiT bridge or VQGAN-LC's projector) are flags made from what each layout declares; a layout refuses an option it does
not take.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import types
from pathlib import Path
from typing import Union, get_args, get_origin

from ..conversion.layouts import DeclaredOption, declared_options
from ..conversion.loader import WEIGHT_ENTRIES, resolve_file
from ..diffusion.conversion import convert_latent_generator, save_latent_generator
from ..hub.paths import atomic_folder, refuse_existing
from ..tokenizer import FVQModel
from .errors import add_debug_flag, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fvq-convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .pt / .pth / .safetensors file, or a Hub repo id with --filename")
    parser.add_argument("--filename", help="the file inside the Hub repo (or local folder) given as checkpoint")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--output", required=True, help="folder to save_pretrained into (written all at once: a kill "
                        "mid-write leaves no partial folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    parser.add_argument("--weights", default="auto", choices=("auto", *WEIGHT_ENTRIES, "bare"),
                        help="which entry of a training checkpoint (auto: ema, then model, then state_dict)")
    parser.add_argument("--codebook-l2-norm", action=argparse.BooleanOptionalAction, default=None,
                        help="whether the original l2-normalised its codes (default: from the file's args, else "
                             "the release rules; asked for when neither tells)")
    for name, declared in declared_options().items():
        add_layout_option(parser, name, declared)
    parser.add_argument("--sample-size", type=int, default=256, help="resolution the model was trained at")
    parser.add_argument("--config", help="config folder or hub id to check the weights against (default: inferred)")
    parser.add_argument("--residual-depth", type=int,
                        help="the file is the FVQ authors' residual variant (vq_model_qbridge_rqvae.py: 4); files "
                             "cannot tell it from the DiT-bridge model")
    parser.add_argument("--scales", type=int, nargs="+",
                        help="a VAR file's scales, coarsest first, ending at the latent grid (files do not save them; "
                             "default: VAR's 1 2 3 4 5 6 8 10 13 16 when they fit)")
    parser.add_argument("--fold", action="store_true", help="also write <output>-folded with the bridge folded")
    parser.add_argument("--generator", choices=("dit", "sit", "auto"),
                        help="the file is a DiT / SiT latent generator (VQGAN-LC's DiT-LC, SiT-LC), not a tokenizer: "
                             "write <output>/transformer and <output>/scheduler (auto: the kind from the file's args)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow files that pickle objects other than tensors and argparse args; runs their code")
    add_debug_flag(parser)
    return parser


def add_layout_option(parser: argparse.ArgumentParser, name: str, declared: DeclaredOption) -> None:
    """A flag for one layout option (not given: None, the layout's default): `--keep-bridge` for a bool that
    defaults to False, `--x` / `--no-x` for another bool, `--x VALUE` for an int, float or str."""
    flag, help = f"--{name.replace('_', '-')}", f"{declared.help} (layouts: {', '.join(declared.layouts)})"
    hint = declared.hint
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if hint is bool:
        action = "store_true" if declared.default is False else argparse.BooleanOptionalAction
        parser.add_argument(flag, action=action, default=None, help=help)
    elif hint in (int, float, str):
        parser.add_argument(flag, type=hint, help=help)
    else:
        raise TypeError(f"The layout option {name} is a {declared.hint}: fvq-convert makes flags of bool, int, float "
                        "and str options only.")


def convert(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for folder in output_folders(args):  # before any conversion
        refuse_existing(folder, args.overwrite, replaceable=REPLACEABLE)
        source = Path(args.checkpoint).resolve()
        if source.exists() and (source == folder or folder in source.parents):
            raise ValueError(f"--output {args.output} holds the checkpoint {args.checkpoint}: write elsewhere.")
    if args.generator is not None:
        convert_generator(args)
        return
    config = FVQModel.load_config(args.config) if args.config else None
    if args.residual_depth is not None:
        config = {**(config or {}), "quantizer_type": "residual", "quantizer_config": {"depth": args.residual_depth}}
    if args.scales is not None:
        config = {**(config or {}), "quantizer_type": "multiscale", "quantizer_config": {"scales": args.scales}}
    options = {name: getattr(args, name) for name in declared_options()}  # None: not given
    model, info = FVQModel.from_original_checkpoint(
        args.checkpoint, args.filename, output_loading_info=True, weights=args.weights, config=config,
        codebook_l2_norm=args.codebook_l2_norm, sample_size=args.sample_size, trust_pickle=args.trust_pickle,
        revision=args.revision, **options)
    outputs = list(zip(output_folders(args), [model] + ([model.fold_bridge()] if args.fold else [])))
    with contextlib.ExitStack() as stack:  # both folders (with --fold) are written, then both renamed in
        for folder, converted in outputs:
            tmp = stack.enter_context(atomic_folder(folder, args.overwrite, replaceable=REPLACEABLE))
            converted.save_pretrained(tmp)
            info.save(tmp)
    for folder, converted in outputs:
        print(f"Wrote {folder} (layout {info.layout}, {info.weights} weights, bridge "
              f"{converted.config.bridge_type}, quantizer {converted.config.quantizer_type}, K = "
              f"{converted.codebook_size}, codebook_l2_norm="
              f"{info.codebook_l2_norm}: {info.l2_norm_reason}).")


# What an earlier fvq-convert output holds (a tokenizer folder; a generator's): --overwrite replaces only those.
REPLACEABLE = ("config.json", "original_checkpoint.json", "transformer", "scheduler")


def output_folders(args: argparse.Namespace) -> list[Path]:
    """`--output`, and with `--fold` (tokenizers) its `-folded` sibling, as absolute paths."""
    output = Path(args.output).resolve()
    fold = args.fold and args.generator is None
    return [output] + ([output.with_name(output.name + "-folded")] if fold else [])


# Tokenizer options that a latent generator does not take (given: not at the parser's default).
TOKENIZER_ONLY = ("config", "residual_depth", "scales", "fold", "codebook_l2_norm", "sample_size")


def convert_generator(args: argparse.Namespace) -> None:
    """`--generator`: a DiT / SiT checkpoint -> `<output>/transformer` and `<output>/scheduler`."""
    defaults = build_parser()
    given = [name for name in TOKENIZER_ONLY if getattr(args, name) != defaults.get_default(name)]
    given += [name for name in declared_options() if name != "num_heads" and getattr(args, name) is not None]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ValueError(f"{flags} {'is a tokenizer option' if len(given) == 1 else 'are tokenizer options'}: a latent "
                         "generator (--generator) takes --weights, --num-heads, --filename, --revision and "
                         "--trust-pickle.")
    path, _ = resolve_file(args.checkpoint, args.filename, **({"revision": args.revision} if args.revision else {}))
    kind = None if args.generator == "auto" else args.generator
    transformer, scheduler = convert_latent_generator(path, kind=kind, weights=args.weights, num_heads=args.num_heads,
                                                      trust_pickle=args.trust_pickle)
    with atomic_folder(args.output, args.overwrite, replaceable=REPLACEABLE) as tmp:
        save_latent_generator(transformer, scheduler, tmp)
    config = transformer.config
    print(f"Wrote {args.output}/transformer ({type(transformer).__name__}: {config.num_layers} layers, "
          f"{config.num_attention_heads} heads, {config.in_channels} -> {config.out_channels} channels at "
          f"{config.sample_size} x {config.sample_size}) and {args.output}/scheduler ({type(scheduler).__name__}).")


def main(argv: list[str] | None = None) -> None:
    run_command(build_parser(), argv, convert)


if __name__ == "__main__":
    main()
