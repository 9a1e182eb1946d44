"""How often a search under bf16 autocast (the FVQ authors' numerics, `quantizer_precision="autocast"`) picks another
code than the nearest one, which the default fp32 search returns.

For each K x d x N: K codes and N latents drawn N(0, 1) (seed 0) and rounded to bf16, as a bf16 model hands them to
the quantizer; the exact nearest code of each (fp32 distances of those values) against their distance
`|z|^2 + |e|^2 - 2 z.e` as autocast computes it: on a GPU (emulated here: the squared norms in fp32, the cross term
a bf16 matmul, i.e. fp32 accumulation rounded to bf16) and on a CPU (`torch.autocast("cpu")` runs the norms, sums
and matmul in bf16: `fvq_hf.search.autocast_search`). Reported: the fraction of ids that differ, and how much
farther the code taken is than the nearest (mean relative excess squared distance).

    python benchmarks/autocast_search_ids.py

On an Intel Xeon (AVX-512), torch 2.13, seed 0 (one draw; the fractions vary by a few tenths of a percent):

| K | d | N | GPU numerics: ids differ | excess | CPU autocast: ids differ | excess |
| --- | --- | --- | --- | --- | --- | --- |
| 16,384 | 256 | 2,048 | 0.8% | 3.7e-06 | 8.7% | 2.4e-04 |
| 16,384 | 8 | 4,096 | 4.1% | 7.4e-04 | 8.1% | 2.9e-03 |
| 262,144 | 8 | 1,024 | 9.3% | 3.7e-03 | 14.7% | 1.2e-02 |
"""

from __future__ import annotations

import torch

from fvq_hf.search import autocast_search, nearest_code

SHAPES = ((16384, 256, 2048), (16384, 8, 4096), (262144, 8, 1024))


def main() -> None:
    torch.manual_seed(0)
    print("| K | d | N | GPU numerics: ids differ | excess | CPU autocast: ids differ | excess |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size, dim, tokens in SHAPES:
        codes, latents = torch.randn(size, dim).bfloat16(), torch.randn(tokens, dim).bfloat16()
        c, z = codes.float(), latents.float()
        exact = nearest_code(z, c)
        cross = (z @ c.T).bfloat16().float()  # a GPU's bf16 matmul: fp32 accumulation, rounded to bf16
        gpu = (z.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * cross).argmin(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cpu = autocast_search(latents, codes, 4096)

        print(f"| {size:,} | {dim} | {tokens:,} | {(gpu != exact).float().mean():.1%} | "
              f"{excess(z, c, gpu, exact):.1e} | {(cpu != exact).float().mean():.1%} | {excess(z, c, cpu, exact):.1e} |")


def excess(latents: torch.Tensor, codes: torch.Tensor, ids: torch.Tensor, exact: torch.Tensor) -> float:
    """How much farther the codes `ids` are than the nearest ones `exact`: the mean relative excess squared distance."""
    def distance(index: torch.Tensor) -> torch.Tensor:
        return (latents - codes[index]).pow(2).sum(1)
    return float(((distance(ids) - distance(exact)) / distance(exact)).mean())


if __name__ == "__main__":
    main()
