"""`fvq-build-kernels`: build the CPU nearest-code search kernel ahead of time, so that no search waits for it.

    fvq-build-kernels                 # the kernel that searches on this machine will use (half a minute, once)
    fvq-build-kernels --isa all       # every instruction set this CPU runs
    FVQ_HF_KERNEL_CACHE=/opt/fvq-kernels fvq-build-kernels    # in a node image; set the same variable at run time

Run it in a node image, or once before `accelerate launch` (the launched processes then load the build instead of
waiting for one of them to compile it). A kernel already built is only checked. Prints where each build lives
(`fvq_hf.search.build` explains the cache; `$FVQ_HF_KERNEL_CACHE` moves it).
"""

from __future__ import annotations

import argparse

from ..search import kernel
from .errors import add_debug_flag, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fvq-build-kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isa", default=None, choices=("auto", "all", *kernel.ISAS),
                        help=f"which build: the one searches will use (default: ${kernel.ISA_ENV}, else auto, the "
                             "widest this CPU runs), all that this CPU runs, or one by name")
    add_debug_flag(parser)
    return parser


def build_kernels(args: argparse.Namespace) -> None:
    isas = kernel.supported_isas() if args.isa == "all" else [kernel.choose_isa(args.isa)]
    for isa in isas:
        kernel.load_kernel(isa, required=True)  # a ValueError that says why it cannot be built
        print(f"{isa}: {kernel.kernel_folder(isa)}")


def main(argv: list[str] | None = None) -> None:
    run_command(build_parser(), argv, build_kernels)


if __name__ == "__main__":
    main()
