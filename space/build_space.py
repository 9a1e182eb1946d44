"""Build the folder a Hugging Face Space receives: the app, its examples, and this repository's package as a wheel.

    python space/build_space.py build/space                 # from the repository root
    hf upload my-org/fvq-demo build/space . --repo-type space

fvq-hf is on no package index, so the Space installs the wheel built here (`wheels/`), which its
requirements.txt names by path; the Space's own pip then installs torch, diffusers, gradio and the rest.
Set FVQ_MODEL in the Space's settings (and list the model under `models:` in README.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FILES = ("app.py", "handlers.py", "README.md")


def build(dest: Path) -> Path:
    """Write the Space folder into `dest` (emptied first); returns the wheel it holds."""
    if dest.resolve() in (ROOT, HERE, *ROOT.parents):
        raise ValueError(f"{dest} is the repository itself; choose an empty folder, e.g. build/space.")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "wheels").mkdir(parents=True)
    for name in FILES:
        shutil.copy2(HERE / name, dest / name)
    shutil.copytree(HERE / "examples", dest / "examples")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dest / "wheels"),
                    str(ROOT)], check=True)
    wheel = next((dest / "wheels").glob("fvq_hf-*.whl"))
    (dest / "requirements.txt").write_text(
        "# This repository's package, built by space/build_space.py, with the demo's extras.\n"
        f"./wheels/{wheel.name}[space]\n")
    return wheel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="build_space", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="the folder to write (emptied first)")
    args = parser.parse_args(argv)
    wheel = build(args.dest)
    print(f"Wrote {args.dest} with {wheel.name}; upload it with: hf upload <org>/<space> {args.dest} . "
          "--repo-type space")


if __name__ == "__main__":
    main()
