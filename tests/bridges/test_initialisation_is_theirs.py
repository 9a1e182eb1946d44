"""Initialisation, bit for bit: every bridge kind of the FVQ authors, and their quantizers, at the same seed.

The fixtures (`tests/fixtures/original/init_bridges.json`, `init_bridges.safetensors`) were written by
`PYTHONPATH=/tmp/origlib python benchmarks/authors_training.py init /tmp/fvq_orig` from their code (yfChang-cv/FVQ at
577b848c) at seed 0 and K = 256 (a 16 x 16 code image), d = 8 unless a case says otherwise:
- `bridges`: each bridge built alone, as their `VectorQuantizer` builds it (`QBridge_models[QB_type](input_size=16,
  in_channels=d, ...)`): the DiT QBridge (`qbridge.py`) at S/4 and L/8, unconditional (`is_uncondition`, one label
  row) and conditional (1001 rows); the release ViT bridge (`qbridge_ViT.py`) at S/4 and L/8; their SimVQ and
  VQGAN-LC baselines (`Qbridge-lin/1`, `Qbridge-lin/5`).
- `quantizers`: their `VectorQuantizer` (table, then the bridge) of the plain DiT path (`vq_model_qbridge.py`, L/4 and
  L/8 at d = 256 as the shipped scripts, S/4 conditional at d = 8), the residual variant (`vq_model_qbridge_rqvae.py`,
  S/4, d = 8) and the release (`vq_model_qbridge_release.py`, ViT L/4, d = 256), with digests of the generator state
  at two points of their construction.

Each tensor is kept as the sha256 of its exact fp32 bytes with its shape (and its mean and std, only for the failure
message); the two small S/4 bridges (under 600 KB each) are also stored as tensors. Digests, not tensors, for the
rest: an L/8 bridge is 1.9M parameters (7 MB), a d = 256 quantizer up to 4M, and equality to the bit needs no more
than the digest.

The values are what torch's CPU generator draws: the same bits on any CPU whose ATen capability is AVX2 or AVX512
(checked: both give the same digests), but not on others (`ATEN_CPU_CAPABILITY=default`, ARM), whose vectorised
`uniform_` / `normal_` round differently; there these tests skip, saying so. A torch release that changes how its
generator fills tensors would fail them: regenerate the fixtures with their code and see that ours still matches.

One-line changes these tests catch (see tests/training/README.md): the DiT label embedding at std 0.025 instead of
0.02, and no xavier init of the Linears (both fail `test_every_bridge_of_theirs_starts_as_theirs_at_the_same_seed`).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

import fvq_hf.quantizers.base as quantizer_base
from fvq_hf import FVQModel
from fvq_hf.bridges import QBRIDGE_PRESETS, DiTBridge, LinearBridge, MLPBridge, VQBridge, qbridge_config
from fvq_hf.conversion.layouts import detection_order
from fvq_hf.quantizers import quantizer_class

from ..helpers import FIXTURES, ROOT

META = json.loads((FIXTURES / "init_bridges.json").read_text())
STORED = load_file(FIXTURES / "init_bridges.safetensors")  # the small bridges' tensors, "<case>/<their key>"
pytestmark = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason=f"the fixtures hold the bits torch's CPU generator draws with AVX2 / AVX512 kernels; this CPU runs "
           f"{torch.backends.cpu.get_cpu_capability()}, whose uniform_ / normal_ round differently")


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def our_names(their_names) -> dict[str, str]:
    """Their `quantize.*` keys -> ours (`quantizer.*`), by the conversion layout that recognises them."""
    state = {name: name for name in their_names}
    layout = next(found for cls in detection_order() if (found := cls.recognise(state)))
    return {theirs: ours for ours, theirs in layout.rename(state)[0].items()}


def assert_same_bits(ours: dict[str, torch.Tensor], theirs: dict[str, dict], stored: dict | None = None) -> None:
    """Every tensor of theirs (digest, shape) is ours to the bit, and ours has no other tensor."""
    names = our_names(theirs)
    assert set(ours) == set(names.values()), set(ours) ^ set(names.values())
    differ = []
    for their_name, our_name in names.items():
        tensor, entry = ours[our_name], theirs[their_name]
        assert list(tensor.shape) == entry["shape"] and str(tensor.dtype) == f"torch.{entry['dtype']}", our_name
        if digest(tensor) != entry["sha256"]:
            detail = f"{our_name}: mean {tensor.double().mean():.6g} / std {tensor.double().std():.6g}, theirs " \
                     f"{entry['mean']:.6g} / {entry['std']:.6g}"
            if stored is not None:
                detail += f", largest difference {(tensor - stored[their_name]).abs().max():.3g}"
            differ.append(detail)
    assert not differ, "not their initial values:\n" + "\n".join(differ)


def our_bridge(name: str, code_dim: int):
    """Ours for a bridge case of the fixture, with the sizes of their `QB_type`."""
    size, kind = META["codebook_size"], name.split("-")[0]
    if kind == "dit":
        return DiTBridge(size, code_dim, **qbridge_config(f"QBridge-{name.split('-')[1]}",
                                                          conditional=name.endswith("conditional")))
    if kind == "vit":
        return VQBridge(size, code_dim, **QBRIDGE_PRESETS[f"QBridge-{name.split('-')[1]}"])  # 4 heads, MLP ratio 2
    if kind == "linear":
        return LinearBridge(size, code_dim)
    return MLPBridge(size, code_dim, hidden_size=code_dim, depth=4)  # their lin/5: five Linear(d, d)


@pytest.mark.parametrize("name", list(META["bridges"]))
def test_every_bridge_of_theirs_starts_as_theirs_at_the_same_seed(name):
    case = META["bridges"][name]
    stored = {k[len(name) + 1:]: v for k, v in STORED.items() if k.startswith(f"{name}/")} or None
    torch.manual_seed(META["seed"])
    bridge = our_bridge(name, case["code_dim"])
    assert_same_bits({f"quantizer.bridge.{k}": v for k, v in bridge.state_dict().items()}, case["tensors"], stored)


# The hub config that reproduces each of their quantizers (its README's "reproduces" line), at K = 256.
HUB_CONFIGS = {"plain-dit-L/4": "fvq-dit-16k", "plain-dit-L/8": "fvq-dit-65k", "residual-dit-S/4": "fvq-rq-dit-16k",
               "release-vit-L/4": "fvq-16k"}


def our_quantizer_config(name: str) -> dict:
    if name in HUB_CONFIGS:
        return dict(FVQModel.load_config(ROOT / "hub_configs" / HUB_CONFIGS[name]))
    # No hub config trains a class-conditional bridge: their `vq_train_qbridge_lr.py` without `--is_uncondition`.
    return {"vq_embed_dim": 8, "bridge_type": "dit", "bridge_config": qbridge_config("QBridge-S/4", conditional=True),
            "quantizer_type": "vq", "quantizer_config": {}, "table_init": "auto"}


@pytest.mark.parametrize("name", list(META["quantizers"]))
def test_their_quantizers_start_as_ours_with_their_generator_state_replayed(name, monkeypatch):
    """Their `VectorQuantizer` draws the table (`nn.Embedding`, N(0, 1)), overwrites it with uniform(-1/K, 1/K), then
    builds the bridge. Ours (`TableQuantizer.build`, kept so that a seed gives fvq-hf 0.1's weights) draws the table,
    builds the bridge, then initialises the table: the same draws in another order, so at the same seed the bridge
    and table differ from theirs. Here their order is replayed: at the point where ours builds its bridge, the
    generator is checked to be where theirs was after the table (digest), moved past their uniform draw (checked to
    reach their state before the bridge), and put back after the bridge for the table's init. With that, ours must be
    theirs to the bit, built from the hub config of the same recipe."""
    case, config = META["quantizers"][name], our_quantizer_config(name)
    size = META["codebook_size"]
    assert config["vq_embed_dim"] == case["code_dim"]
    build_bridge = quantizer_base.build_bridge

    def in_their_order(*args, **kwargs):
        after_table = torch.get_rng_state()
        assert digest(after_table) == case["rng"]["after_table"], "the table's nn.Embedding did not draw as theirs"
        torch.empty(size, case["code_dim"]).uniform_(-1.0 / size, 1.0 / size)  # their table init comes first
        assert digest(torch.get_rng_state()) == case["rng"]["before_bridge"]
        bridge = build_bridge(*args, **kwargs)
        torch.set_rng_state(after_table)
        return bridge

    monkeypatch.setattr(quantizer_base, "build_bridge", in_their_order)
    torch.manual_seed(META["seed"])
    quantizer = quantizer_class(config["quantizer_type"]).build(
        size, config["vq_embed_dim"], config["quantizer_config"], bridge_type=config["bridge_type"],
        bridge_config=config["bridge_config"], table_init=config["table_init"])
    assert_same_bits({f"quantizer.{k}": v for k, v in quantizer.state_dict().items()}, case["tensors"])
