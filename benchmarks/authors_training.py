"""The FVQ authors' training code, run as their scripts run it, next to this package (issue 21).

No line of their code is in this repository: their classes are imported from a checkout of yfChang-cv/FVQ
(commit 577b848c), and their learning-rate lambda (a closure inside their `main`) is taken from their script's
source as it is. timm (their DiT / ViT layers) imports torchvision, which has no CPU wheel here: a stub module
stands in (the timm layers their code uses never call it). Their LPIPS needs torchvision's pretrained VGG16, which
cannot be downloaded: their perceptual loss is replaced by 0 (perceptual weight 0 here too).

    git clone https://github.com/yfChang-cv/FVQ /tmp/fvq_orig      # at 577b848c
    pip install --no-deps --target /tmp/origlib timm==1.0.31
    cd benchmarks
    PYTHONPATH=/tmp/origlib python authors_training.py fixtures /tmp/fvq_orig     # the training-parity fixtures
    PYTHONPATH=/tmp/origlib python authors_training.py init /tmp/fvq_orig         # their initial weights, seed 0
    PYTHONPATH=/tmp/origlib python authors_training.py multiscale /tmp/fvq_orig   # VAR + QBridge, theirs vs ours
    PYTHONPATH=/tmp/origlib python authors_training.py labels /tmp/fvq_orig       # their conditional label dropout
    python authors_training.py table --tables authors_multiscale.json             # the runs as a markdown table

`fixtures` writes `tests/fixtures/original/train_*.safetensors` and `training_lr.json`: for each combination
their training scripts have (plain + the release ViT bridge, plain + DiT QBridge, residual + DiT, VAR + DiT), a
small model built by their classes (seeded; zero-initialised layers perturbed N(0, 0.05) so that codes differ;
every weight rounded to fp16, so the fp32 values rebuilt from the file are exactly the ones their code ran), 20
seeded batches (fp16 values), and what their loop gave: every step's loss terms, the first step's gradients
before clipping, every step's learning rate from their `LambdaLR`, and their optimizer's set-up.

`init` writes `tests/fixtures/original/init_bridges.json` (and `.safetensors`): at seed 0 and K = 256, the initial
state dict of every bridge kind of theirs built alone (DiT QBridge S/4 and L/8, unconditional and conditional; the
release ViT bridge S/4 and L/8; `Qbridge-lin/1`, `Qbridge-lin/5`) and of their quantizers (plain and residual DiT
paths, the release ViT path) as sha256 digests of each tensor's bytes, the two small S/4 bridges also as tensors,
and, for the quantizers, digests of the generator state after their table's `nn.Embedding` and before their bridge.

`labels` writes `tests/fixtures/original/label_dropout.safetensors`: their class-conditional quantizer in training
mode (each image's codebook at label 0 or, dropped, at the null class; weights and latents fp16-exact, stored in
fp16), and their `LabelEmbedder`'s draw alone (which of 4096 labels it dropped).

`multiscale` trains their VAR tokenizer with a DiT QBridge (`var/model/vqvae.py`, their backbone classes rebuilt
at the fvq-cpu-4k size) with their loop, and this package's `fvq-train` step (`TokenizerStep`) on the same
initial weights (converted with the bridge kept), the same batches and the same schedule; then both, and a plain
multi-scale codebook of this package, are evaluated on every held-out tile.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
import time
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "original"
SCRIPTS = {"release_vit": "vq_train_qbridge_lr_release.py", "plain_dit": "vq_train_qbridge_lr.py",
           "residual_dit": "vq_train_qbridge_lr_rqvae.py", "var_dit": "vq_train_qbridge_lr_var.py"}
# The fixtures: 20 steps at batch 2 of 32 px images; 5 batches an "epoch", 4 epochs, 1 warmup epoch, lin decay
# after 30%, at a learning rate of 1e-3 (their `tlr = lr * global_batch / 128`).
STEPS, BATCH, SIZE = 20, 2, 32
SCHEDULE = dict(warmup_ep=1, epochs=4, steps_per_epoch=5, lrT=0.3, sche_type="lin", lr=1e-3 * 128 / BATCH)
SMALL = dict(ch=32, ch_mult=[1, 1], num_res_blocks=1)  # downsample 2
# VAR: downsample 4, so that a 32 px image gives the 8 x 8 latent grid of its scales (3 and 5 do not divide 8, as
# VAR's do not divide 16).
VAR_CH_MULT, VAR_SCALES = [1, 1, 1], (1, 2, 3, 5, 8)


# ---- their code ---------------------------------------------------------------------------------------------------
def stub_torchvision() -> None:
    """Make `import torchvision...` give empty modules (timm imports it; their layers never call it)."""
    class Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if f"{self.__name__}.{name}" not in sys.modules:
                module = Stub(f"{self.__name__}.{name}")
                module.__path__ = []
                sys.modules[module.__name__] = module
            return sys.modules[f"{self.__name__}.{name}"]

        def __mro_entries__(self, bases):  # `class X(transforms.ToTensor)` in timm.data
            return (object,)

    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                from importlib.machinery import ModuleSpec
                return ModuleSpec(name, self, is_package=True)

        def create_module(self, spec):
            module = Stub(spec.name)
            module.__path__ = []
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())


def import_their_code(checkout: str) -> types.SimpleNamespace:
    """Their model modules and `VQLoss` (with the perceptual term at 0) from a checkout of their repository."""
    root = Path(checkout)
    code_dir = root / "tokenizer" / "tokenizer_image"
    sys.path[:0] = [str(code_dir), str(root)]
    stub_torchvision()
    import tokenizer.tokenizer_image.lpips as their_lpips

    class NoPerceptual(torch.nn.Module):  # their LPIPS loads torchvision's pretrained VGG16
        def forward(self, x, y):
            return torch.zeros(x.shape[0], 1, 1, 1)

    their_lpips.LPIPS = NoPerceptual
    import tokenizer.tokenizer_image.vq_loss as their_loss
    import vq_model_qbridge
    import vq_model_qbridge_release
    import vq_model_qbridge_rqvae
    from var.model import basic_vae, vqvae

    their_loss.LPIPS = NoPerceptual
    return types.SimpleNamespace(code_dir=code_dir, VQLoss=their_loss.VQLoss, plain_dit=vq_model_qbridge,
                                 release_vit=vq_model_qbridge_release, residual_dit=vq_model_qbridge_rqvae,
                                 vqvae=vqvae, basic_vae=basic_vae)


def their_lr_lambda(script: Path, args: dict, steps_per_epoch: int):
    """Their `combined_lr_lambda` (a closure inside `main`), compiled from their training script's source."""
    tree = ast.parse(script.read_text())
    function = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                    and node.name == "combined_lr_lambda")
    namespace = {"args": types.SimpleNamespace(**args), "loader": range(steps_per_epoch), "math": math}
    exec(compile(ast.Module([function], type_ignores=[]), str(script), "exec"), namespace)
    return namespace["combined_lr_lambda"]


def their_var_model(code, vocab_size: int, code_dim: int, scales, qb_type: str, ch: int, ch_mult, num_res_blocks: int,
                    quant_resi: float = 0.5):
    """Their VAR tokenizer with a QBridge (`var/model/vqvae.py`), its Encoder / Decoder (their classes) rebuilt
    at another size; VQVAE fixes VAR's own size. `quant_resi` is VAR's phi ratio (0: no phi conv)."""
    vae = code.vqvae.VQVAE(vocab_size=vocab_size, z_channels=code_dim, ch=ch, v_patch_nums=tuple(scales),
                           QB_type=qb_type, quant_resi=quant_resi)
    backbone = dict(ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks, z_channels=code_dim, dropout=0.0,
                    using_sa=True, using_mid_sa=True)
    vae.encoder = code.basic_vae.Encoder(double_z=False, in_channels=3, **backbone)
    vae.decoder = code.basic_vae.Decoder(**backbone)
    return vae


def their_fixture_model(kind: str, code) -> tuple[torch.nn.Module, object]:
    """Their model for a fixture `kind`, at the small size, and how their training loop calls it."""
    torch.manual_seed(0)
    if kind == "var_dit":
        model = their_var_model(code, 256, 8, VAR_SCALES, "QBridge-XS/2", SMALL["ch"], VAR_CH_MULT,
                                SMALL["num_res_blocks"])
        return model, lambda m, images: m(images)
    module = getattr(code, kind)
    args = dict(codebook_size=256, codebook_embed_dim=8, z_channels=32, ch=SMALL["ch"],
                encoder_ch_mult=SMALL["ch_mult"], decoder_ch_mult=SMALL["ch_mult"],
                num_res_blocks=SMALL["num_res_blocks"], QB_type="QBridge-XS/2")
    if kind != "release_vit":
        args["is_uncondition"] = True  # the shipped scripts; their residual model has no other path
    model = module.VQModel(module.ModelArgs(**args))
    if kind == "release_vit":
        return model, lambda m, images: m(images)
    # vq_train_qbridge_lr.py: `labels = torch.zeros_like(y)`.
    return model, lambda m, images: m(images, torch.zeros(images.shape[0], dtype=torch.long))


def plain_ring_buffer(model: torch.nn.Module) -> None:
    """Their `codebook_used` ring buffer is registered as an nn.Parameter; their `.to(cuda)` turns it into a plain
    tensor, without which the in-place ring update fails on a CPU. It never enters a loss."""
    model.quantize.codebook_used = model.quantize.codebook_used.detach().clone()


class TheirLoop:
    """One step of their training loop (`vq_train_qbridge_lr*.py`), as written there, on the CPU in fp32."""

    def __init__(self, code, model, forward, script: str, schedule: dict, steps_per_epoch: int, lr: float,
                 image_size: int) -> None:
        self.model, self.forward = model, forward
        self.loss_fn = code.VQLoss(disc_start=20000, disc_weight=0.5, disc_type="patchgan", disc_loss="hinge",
                                   gen_adv_loss="hinge", image_size=image_size, perceptual_weight=0.0,
                                   reconstruction_weight=1.0, reconstruction_loss="l2", codebook_weight=1.0)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.95))
        self.optimizer_disc = torch.optim.Adam(self.loss_fn.discriminator.parameters(), lr=lr, betas=(0.9, 0.95))
        lam = their_lr_lambda(code.code_dir / script, schedule, steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=lam)
        self.scheduler_disc = torch.optim.lr_scheduler.LambdaLR(self.optimizer_disc, lr_lambda=lam)
        self.quiet = types.SimpleNamespace(info=lambda *a, **k: None)
        model.train()
        self.loss_fn.train()

    def __call__(self, images: torch.Tensor, step: int, keep_grads: bool = False) -> tuple[list[float], dict]:
        """Their step `step` (0-based): returns [total, reconstruction, codebook, commitment] and, if asked, the
        gradients before clipping."""
        model, loss_fn, log = self.model, self.loss_fn, dict(logger=self.quiet, log_every=10 ** 9)
        self.optimizer.zero_grad()
        reconstructions, codebook_loss = self.forward(model, images)
        last_layer = getattr(model.decoder, "last_layer", None)
        loss, (rec, _, _) = loss_fn(codebook_loss, images, reconstructions, optimizer_idx=0, global_step=step + 1,
                                    last_layer=last_layer, **log)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None} if keep_grads else {}
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer_disc.zero_grad()
        loss_disc = loss_fn(codebook_loss, images, reconstructions, optimizer_idx=1, global_step=step + 1, **log)
        loss_disc.backward()
        torch.nn.utils.clip_grad_norm_(loss_fn.discriminator.parameters(), 1.0)
        self.optimizer_disc.step()
        self.scheduler.step()
        self.scheduler_disc.step()
        return [loss.item(), rec.item(), codebook_loss[0].item(), codebook_loss[1].item()], grads


def perturb_and_round(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad and not parameter.any():
                parameter.normal_(std=0.05)
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


# ---- fixtures -----------------------------------------------------------------------------------------------------
def fixture(kind: str, code) -> tuple[dict, dict]:
    model, forward = their_fixture_model(kind, code)
    perturb_and_round(model)
    plain_ring_buffer(model)
    initial = {f"model.{k}": v.clone() for k, v in model.state_dict().items() if not k.endswith("codebook_used")}
    batches = (torch.rand(STEPS, BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1).half()
    lr = SCHEDULE["lr"] * BATCH / 128  # their `tlr = args.lr * (args.global_batch_size / 128)`
    loop = TheirLoop(code, model, forward, SCRIPTS[kind], SCHEDULE, SCHEDULE["steps_per_epoch"], lr, SIZE)
    losses, lrs, grads = [], [], {}
    for step in range(STEPS):
        lrs.append(loop.optimizer.param_groups[0]["lr"])
        terms, first = loop(batches[step].float(), step, keep_grads=step == 0)
        losses.append(terms)
        grads = grads or {f"grad.{k}": g for k, g in first.items()}
    optimizer = loop.optimizer
    tensors = {**{k: v.half() if v.is_floating_point() else v for k, v in initial.items()}, **grads,
               "batches": batches, "losses": torch.tensor(losses, dtype=torch.float64),
               "lr": torch.tensor(lrs, dtype=torch.float64)}
    setup = {"class": type(optimizer).__name__, "groups": len(optimizer.param_groups),
             **{k: v for k, v in optimizer.defaults.items() if isinstance(v, (int, float, bool, tuple))},
             "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
             "in_optimizer": sum(p.numel() for g in optimizer.param_groups for p in g["params"])}
    meta = {"kind": kind, "script": SCRIPTS[kind], "schedule": {**SCHEDULE, "global_batch_size": BATCH, "tlr": lr},
            "optimizer": setup, "loss_terms": ["total", "reconstruction", "codebook", "commitment"], "steps": STEPS}
    return tensors, meta


def lr_cases(script: Path) -> list[dict]:
    """Their LambdaLR, stepped as their loop steps it, for several argument sets: the lr before every step."""
    cases = []
    for args, steps_per_epoch in ((dict(warmup_ep=4, epochs=40, lrT=0.3, sche_type="lin"), 3),
                                  (dict(warmup_ep=0, epochs=10, lrT=0.3, sche_type="lin"), 7),
                                  (dict(warmup_ep=1, epochs=10, lrT=0.5, sche_type="cos"), 6),
                                  (dict(warmup_ep=2, epochs=6, lrT=0.3, sche_type="const"), 5)):
        args = {**args, "lr": 1e-4, "global_batch_size": 128}
        lam = their_lr_lambda(script, args, steps_per_epoch)
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=args["lr"], betas=(0.9, 0.95))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lam)
        values = []
        for _ in range(args["epochs"] * steps_per_epoch):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        cases.append({"args": args, "steps_per_epoch": steps_per_epoch, "lr": values})
    return cases


def write_fixtures(code) -> None:
    for kind in SCRIPTS:
        tensors, meta = fixture(kind, code)
        save_file({k: v.contiguous() for k, v in tensors.items()}, FIXTURES / f"train_{kind}.safetensors",
                  metadata={k: json.dumps(v) for k, v in meta.items()})
        print(kind, "losses", [round(v, 5) for v in tensors["losses"][:, 0].tolist()][:5], "...")
    (FIXTURES / "training_lr.json").write_text(json.dumps(
        {"script": SCRIPTS["plain_dit"], "cases": lr_cases(code.code_dir / SCRIPTS["plain_dit"])}, indent=1))


# ---- initialisation: their bridges and quantizers at a fixed seed (issue 34) ------------------------------------------
INIT_SEED, INIT_K, INIT_D = 0, 256, 8  # K = 256: a 16 x 16 code image, which patches of 2, 4 and 8 divide
# Every bridge kind of theirs, built alone as their VectorQuantizer builds it (`input_size` sqrt(K), `in_channels` d):
# name -> (their module, QB_type, keyword arguments).
INIT_BRIDGES = {
    "dit-S/4": ("qbridge", "QBridge-S/4", {"is_uncondition": True}),
    "dit-S/4-conditional": ("qbridge", "QBridge-S/4", {"is_uncondition": False}),
    "dit-L/8": ("qbridge", "QBridge-L/8", {"is_uncondition": True}),
    "dit-L/8-conditional": ("qbridge", "QBridge-L/8", {"is_uncondition": False}),
    "vit-S/4": ("qbridge_ViT", "QBridge-S/4", {}),
    "vit-L/8": ("qbridge_ViT", "QBridge-L/8", {}),
    "linear": ("qbridge", "Qbridge-lin/1", {}),
    "mlp": ("qbridge", "Qbridge-lin/5", {}),
}
# Their quantizers (the table, its uniform init, then the bridge) as their training scripts build them, at K = 256:
# name -> (their model module, VectorQuantizer keyword arguments beyond the shared ones).
INIT_QUANTIZERS = {
    "plain-dit-L/4": ("plain_dit", {"e_dim": 256, "QB_type": "QBridge-L/4", "is_uncondition": True}),
    "plain-dit-L/8": ("plain_dit", {"e_dim": 256, "QB_type": "QBridge-L/8", "is_uncondition": True}),
    "plain-dit-S/4-conditional": ("plain_dit", {"e_dim": INIT_D, "QB_type": "QBridge-S/4", "is_uncondition": False}),
    "residual-dit-S/4": ("residual_dit", {"e_dim": INIT_D, "QB_type": "QBridge-S/4", "is_uncondition": True}),
    "release-vit-L/4": ("release_vit", {"e_dim": 256, "QB_type": "QBridge-L/4"}),
}
INIT_STORED = ("dit-S/4", "vit-S/4")  # the bridges whose tensors are stored (under 600 KB each); the rest as digests


def digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's bytes (C order, its own dtype, little-endian as written by this machine)."""
    import hashlib
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def described(state: dict) -> dict:
    """Per tensor: shape, dtype, sha256 of the exact bytes, and mean / std (for a readable failure message)."""
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch."), "sha256": digest(v),
                "mean": v.double().mean().item(), "std": v.double().std().item() if v.numel() > 1 else 0.0}
            for k, v in state.items()}


def init_fixtures(code) -> tuple[dict, dict]:
    """Their initial state dicts at `INIT_SEED`: every bridge kind alone, and their quantizers with the RNG state at
    the two points where their construction order differs from this package's (after the table's `nn.Embedding`,
    before the bridge)."""
    import qbridge
    import qbridge_ViT

    modules = {"qbridge": qbridge, "qbridge_ViT": qbridge_ViT}
    side = math.isqrt(INIT_K)
    meta = {"seed": INIT_SEED, "codebook_size": INIT_K, "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bridges": {}, "quantizers": {}}
    stored = {}
    for name, (module, qb_type, kwargs) in INIT_BRIDGES.items():
        torch.manual_seed(INIT_SEED)
        bridge = modules[module].QBridge_models[qb_type](input_size=side, in_channels=INIT_D, **kwargs)
        state = {f"quantize.qbridge.{k}": v for k, v in bridge.state_dict().items()}
        meta["bridges"][name] = {"built": f"{module}.QBridge_models[{qb_type!r}](input_size={side}, "
                                          f"in_channels={INIT_D}{''.join(f', {k}={v}' for k, v in kwargs.items())})",
                                 "code_dim": INIT_D, "tensors": described(state)}
        if name in INIT_STORED:
            stored.update({f"{name}/{k}": v.contiguous() for k, v in state.items()})
    for name, (kind, kwargs) in INIT_QUANTIZERS.items():
        module = getattr(code, kind)
        quantizer, rng = their_quantizer(module, kwargs)
        state = {f"quantize.{k}": v for k, v in quantizer.state_dict().items() if k != "codebook_used"}
        meta["quantizers"][name] = {"built": f"{module.__name__}.VectorQuantizer(n_e={INIT_K}, "
                                             + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")",
                                    "code_dim": kwargs["e_dim"], "rng": rng, "tensors": described(state)}
    return meta, stored


def their_quantizer(module, kwargs: dict) -> tuple[torch.nn.Module, dict]:
    """Their `VectorQuantizer` of `module` at `INIT_SEED`, and the digests of the generator state after its table's
    `nn.Embedding` (before their `uniform_`) and when their bridge starts to be built."""
    rng, factories = {}, dict(module.QBridge_models)

    def record_table(parent, attribute, child):  # `self.embedding = nn.Embedding(...)`, registered once built
        if attribute == "embedding" and isinstance(parent, module.VectorQuantizer) and "after_table" not in rng:
            rng["after_table"] = digest(torch.get_rng_state())

    def recording(factory):
        def build(*args, **kw):
            rng["before_bridge"] = digest(torch.get_rng_state())
            return factory(*args, **kw)
        return build

    module.QBridge_models.update({k: recording(f) for k, f in factories.items()})
    hook = torch.nn.modules.module.register_module_module_registration_hook(record_table)
    try:
        torch.manual_seed(INIT_SEED)
        quantizer = module.VectorQuantizer(n_e=INIT_K, beta=0.25, entropy_loss_ratio=0.0, l2_norm=False,
                                           show_usage=True, emb_nograd=False, **kwargs)
    finally:
        hook.remove()
        module.QBridge_models.update(factories)
    return quantizer, rng


def write_init_fixtures(code) -> None:
    meta, stored = init_fixtures(code)
    text = json.dumps(meta, indent=1)  # one line per tensor:
    text = re.sub(r'\{\n\s+"shape"[^}]*\}', lambda m: json.dumps(json.loads(m.group(0))), text)
    (FIXTURES / "init_bridges.json").write_text(text + "\n")
    save_file(stored, FIXTURES / "init_bridges.safetensors", metadata={"seed": str(INIT_SEED)})
    print("init:", ", ".join(meta["bridges"]), "|", ", ".join(meta["quantizers"]))


# ---- bf16: their step and their quantizer under autocast (issue 34) ------------------------------------------------
# Their plain, residual and release models run the bridge and the distance under their loop's autocast; their VAR
# quantizer turns it off (`torch.cuda.amp.autocast(enabled=False)`, which would not turn off a CPU's autocast here).
BF16_KINDS = ("plain_dit", "residual_dit", "release_vit")


def bf16_fixture(kind: str, code) -> tuple[dict, dict]:
    """From the weights and first batch of `train_<kind>.safetensors`, under `torch.autocast("cpu", bfloat16)` (their
    loop's `torch.cuda.amp.autocast(dtype=bfloat16)` does nothing on a CPU): their generator loss terms of one step,
    and their quantizer alone on the latents that step gave it: ids, quantized latents, its two losses and the
    gradients (of the table, the bridge and the latents) of `codebook + commitment + mean(z_q^2)` (the last term
    standing in for the decoder: it passes gradient through their straight-through estimator)."""
    from safetensors import safe_open

    with safe_open(FIXTURES / f"train_{kind}.safetensors", "pt") as f:
        weights = {k[len("model."):]: f.get_tensor(k).float() for k in f.keys() if k.startswith("model.")}
        images = f.get_tensor("batches")[0].float()
    model, forward = their_fixture_model(kind, code)
    model.load_state_dict({**weights, "quantize.codebook_used": model.quantize.codebook_used})
    plain_ring_buffer(model)
    loop = TheirLoop(code, model, forward, SCRIPTS[kind], SCHEDULE, SCHEDULE["steps_per_epoch"], SCHEDULE["lr"], SIZE)
    latents = []
    hook = model.quantize.register_forward_pre_hook(lambda module, args: latents.append(args[0].detach()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # their generator step, as their loop writes it
        reconstructions, codebook_loss = forward(model, images)
        loss, (rec, _, _) = loop.loss_fn(codebook_loss, images, reconstructions, optimizer_idx=0, global_step=1,
                                         last_layer=model.decoder.last_layer, logger=loop.quiet, log_every=10 ** 9)
    hook.remove()
    z = latents[0].clone().requires_grad_(True)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_q, (vq_loss, commit_loss, _, _), (_, _, ids) = model.quantize(*([z] if kind == "release_vit" else [z, None]))
    (vq_loss.float() + commit_loss.float() + z_q.float().square().mean()).backward()
    tensors = {"latents": latents[0], "ids": ids.reshape(-1), "quantized": z_q.detach(), "grad.latents": z.grad,
               **{f"grad.quantize.{k}": p.grad for k, p in model.quantize.named_parameters() if p.grad is not None},
               "step_losses": torch.tensor([loss.item(), rec.item(), codebook_loss[0].item(), codebook_loss[1].item()],
                                           dtype=torch.float64),
               "quantizer_losses": torch.tensor([vq_loss.item(), commit_loss.item()], dtype=torch.float64)}
    return {f"{kind}/{k}": v.contiguous() for k, v in tensors.items()}, {"dtype": "bfloat16", "device": "cpu"}


def write_bf16_fixtures(code) -> None:
    tensors = {}
    for kind in BF16_KINDS:
        found, meta = bf16_fixture(kind, code)
        tensors.update(found)
        print(kind, "bf16 step losses", [round(v, 6) for v in found[f"{kind}/step_losses"].tolist()])
    save_file(tensors, FIXTURES / "train_bf16.safetensors",
              metadata={"kinds": json.dumps(BF16_KINDS), "autocast": json.dumps(meta), "torch": torch.__version__,
                        "cpu_capability": torch.backends.cpu.get_cpu_capability()})


# ---- label dropout: their class-conditional DiT quantizer in training (issue 34) -----------------------------------
LABEL_SEED, LABEL_BATCH, LABEL_DRAWS = 3, 16, 4096


def label_dropout_fixture(code) -> tuple[dict, dict]:
    """Their class-conditional quantizer (`vq_model_qbridge.VectorQuantizer`, `is_uncondition=False`: a 1001-row
    label table, dropout 0.1; QBridge-XS/2, K = 256, d = 8; zero-initialised layers perturbed, label table N(0, 1)
    so that label 0's and the null class's codebooks differ, every weight fp16-exact) in training mode, called as
    `vq_train_qbridge_lr.py` calls it (labels all 0), after `torch.manual_seed(LABEL_SEED)`: the labels their
    `LabelEmbedder.token_drop` gave, ids, quantized latents, losses and the gradients of
    `codebook + commitment + mean(z_q^2)`. And their `LabelEmbedder(1000, 32, 0.1)` alone in training on
    `LABEL_DRAWS` zero labels after `torch.manual_seed(LABEL_SEED)`: which it dropped to the null class."""
    import qbridge

    module = code.plain_dit
    torch.manual_seed(0)
    quantizer = module.VectorQuantizer(n_e=256, e_dim=8, beta=0.25, entropy_loss_ratio=0.0, l2_norm=False,
                                       show_usage=False, QB_type="QBridge-XS/2", is_uncondition=False,
                                       emb_nograd=False)
    with torch.no_grad():
        quantizer.qbridge.y_embedder.embedding_table.weight.normal_()
    perturb_and_round(quantizer)
    latents = torch.randn(LABEL_BATCH, 8, 4, 4, generator=torch.Generator().manual_seed(1)).half().float()
    drawn = []
    token_drop = qbridge.LabelEmbedder.token_drop

    def recording(self, labels, force_drop_ids=None):
        drawn.append(token_drop(self, labels, force_drop_ids))
        return drawn[-1]

    qbridge.LabelEmbedder.token_drop = recording
    try:
        quantizer.train()
        z = latents.clone().requires_grad_(True)
        torch.manual_seed(LABEL_SEED)
        z_q, (vq_loss, commit_loss, _, _), (_, _, ids) = quantizer(z, torch.zeros(LABEL_BATCH, dtype=torch.long))
        (vq_loss + commit_loss + z_q.square().mean()).backward()
        embedder = qbridge.LabelEmbedder(1000, 32, 0.1).train()
        torch.manual_seed(LABEL_SEED)
        embedder(torch.zeros(LABEL_DRAWS, dtype=torch.long), True)
    finally:
        qbridge.LabelEmbedder.token_drop = token_drop
    labels, draws = drawn
    if not 0 < int((labels == 1000).sum()) < LABEL_BATCH:
        raise RuntimeError(f"seed {LABEL_SEED} does not drop some but not all of {LABEL_BATCH} labels: choose another")
    tensors = {**{f"quantize.{k}": v.half() for k, v in quantizer.state_dict().items()}, "latents": latents.half(),
               "labels": labels, "ids": ids, "quantized": z_q.detach(), "grad.latents": z.grad,
               **{f"grad.quantize.{k}": p.grad for k, p in quantizer.named_parameters() if p.grad is not None},
               "losses": torch.tensor([vq_loss.item(), commit_loss.item()], dtype=torch.float64),
               "dropped": draws == 1000}
    meta = {"seed": LABEL_SEED, "batch": LABEL_BATCH, "draws": LABEL_DRAWS, "dropout_prob": 0.1, "null_class": 1000,
            "quantizer": "vq_model_qbridge.VectorQuantizer(n_e=256, e_dim=8, QB_type='QBridge-XS/2', "
                         "is_uncondition=False)", "torch": torch.__version__}
    return {k: v.contiguous() for k, v in tensors.items()}, meta


def write_label_dropout_fixture(code) -> None:
    tensors, meta = label_dropout_fixture(code)
    save_file(tensors, FIXTURES / "label_dropout.safetensors", metadata={k: json.dumps(v) for k, v in meta.items()})
    print("labels:", tensors["labels"].tolist(), "| dropped of", meta["draws"], ":", int(tensors["dropped"].sum()))


# ---- multi-scale: theirs and ours side by side ---------------------------------------------------------------------
def multiscale(code, args) -> dict:
    """Their VAR + QBridge and this package's step from the same weights, on the same batches; evaluated alike."""
    from accelerate import Accelerator

    from fvq_hf import FVQModel
    from fvq_hf.data.sources import EvalImages, RandomCrops, open_source
    from fvq_hf.evaluation.evaluate import evaluate
    from fvq_hf.losses import PatchGANDiscriminator, TokenizerLoss
    from fvq_hf.training import LoopConfig
    from fvq_hf.training.runtime import LearningRate
    from fvq_hf.training.trainer import TokenizerStep, build_optimizers

    config = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")
    size, widths = config["sample_size"], config["block_out_channels"]
    ch, ch_mult = widths[0], [w // widths[0] for w in widths]
    scales = [1, 2, 3, 4, 5, 6, 8]
    heldout = EvalImages("builtin:heldout", size, limit=args.eval_limit)
    schedule = dict(warmup_ep=args.warmup_epochs, epochs=1, lrT=0.3, sche_type="lin", lr=args.lr * 128 / args.batch_size,
                    global_batch_size=args.batch_size)
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() else {}

    def batches(seed: int):
        data = RandomCrops(open_source("builtin"), size, length=args.steps * args.batch_size, seed=seed)
        return torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=0,
                                           generator=torch.Generator().manual_seed(seed))

    def report(name: str, model, seconds: float, history: list) -> dict:
        metrics, _ = evaluate(model.eval(), heldout, batch_size=64)
        row = {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "seconds_per_step": seconds,
               "history": history, **{k: metrics[k] for k in ("usage", "perplexity", "num_tokens", "tokens_per_code",
                                                               "psnr", "ssim", "level_name", "levels")}}
        print(f"{name}: usage {row['usage']:.2%} at {row['tokens_per_code']:.0f} tokens/code, perplexity "
              f"{row['perplexity']:.1f}, PSNR {row['psnr']:.2f} dB, {seconds:.2f} s/step", flush=True)
        return row

    for seed in args.seeds:
        for variant in args.variants:
            name = f"{variant}{args.tag}@seed{seed}"
            if name in results:
                continue
            torch.manual_seed(seed)
            qb_type = {"theirs-dit": "QBridge-S/4", "ours-dit": "QBridge-S/4"}.get(variant, "Qbridge-none")
            theirs = their_var_model(code, 4096, config["vq_embed_dim"], scales, qb_type, ch, ch_mult,
                                     config["layers_per_block"], args.phi_ratio)
            plain_ring_buffer(theirs)
            history, start = [], time.perf_counter()
            if variant == "theirs-dit":
                loop = TheirLoop(code, theirs, lambda m, x: m(x), SCRIPTS["var_dit"], schedule, args.steps,
                                 args.lr, size)
                for step, images in enumerate(batches(seed)):
                    terms, _ = loop(images, step)
                    if step % 100 == 0:
                        history.append([step, *terms])
                seconds = (time.perf_counter() - start) / args.steps
                state = {k: v for k, v in theirs.state_dict().items() if not k.endswith("codebook_used")}
                file = Path(args.work_dir) / f"theirs{args.tag}-{seed}.pt"
                file.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"model": state}, file)
                model = FVQModel.from_original_checkpoint(file, sample_size=size,
                                                          config={"quantizer_config": {"scales": scales, "phi_ratio": args.phi_ratio}})
            else:
                # Their initial weights (their VQVAE draws them), converted: the same start as theirs.
                file = Path(args.work_dir) / f"init-{variant}{args.tag}-{seed}.pt"
                file.parent.mkdir(parents=True, exist_ok=True)
                state = {k: v for k, v in theirs.state_dict().items() if not k.endswith("codebook_used")}
                if variant == "ours-plain":
                    state = {k: v for k, v in state.items() if "qbridge" not in k}
                torch.save({"model": state}, file)
                model = FVQModel.from_original_checkpoint(file, sample_size=size, keep_bridge=variant == "ours-dit",
                                                          config={"quantizer_config": {"scales": scales, "phi_ratio": args.phi_ratio}}).train()
                discriminator = PatchGANDiscriminator()
                optimizer, optimizer_d = build_optimizers(model, discriminator, args.lr, (0.9, 0.95))
                loss_fn = TokenizerLoss(None, perceptual_weight=0.0, disc_start=20000)
                step_fn = TokenizerStep(Accelerator(cpu=True), model, discriminator, loss_fn, optimizer, optimizer_d,
                                        1.0)
                lr = LearningRate(LoopConfig(lr=args.lr, schedule="lin", constant_fraction=0.3, max_steps=None,
                                             epochs=1, warmup_epochs=args.warmup_epochs, warmup_fraction=0.0),
                                  args.steps, [optimizer, optimizer_d])
                for step, images in enumerate(batches(seed)):
                    lr.set(step)
                    logs, _ = step_fn(images, step)
                    if step % 100 == 0:
                        history.append([step, *(logs[k] for k in ("loss/total", "loss/reconstruction",
                                                                  "loss/codebook", "loss/commitment"))])
                seconds = (time.perf_counter() - start) / args.steps
            results[name] = report(name, model, seconds, history)
            path.write_text(json.dumps(results, indent=2))
    return results


def table(paths: list[str]) -> str:
    """The runs in the `multiscale` JSON files as markdown: one row per run, then the mean over seeds; and, for the
    runs evaluated per scale, a second table of each scale's perplexity and usage, with its tokens per code."""
    runs: dict[str, dict[int, dict]] = {}
    for path in paths:
        for name, row in json.loads(Path(path).read_text()).items():
            variant, _, seed = name.partition("@seed")
            runs.setdefault(variant, {})[int(seed)] = row
    lines = ["| variant | seed | held-out usage | tokens / code | perplexity | PSNR (dB) | SSIM | usage at 1x1 / 8x8 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant, seeds in runs.items():
        for seed, r in sorted(seeds.items()):
            levels = [level["usage"] for level in r["levels"]] if "levels" in r else r["usage_by_level"]
            lines.append(f"| {variant} | {seed} | {r['usage']:.2%} | {r['tokens_per_code']:.0f} | {r['perplexity']:.1f} | "
                         f"{r['psnr']:.2f} | {r['ssim']:.3f} | {levels[0]:.2%} / {levels[-1]:.2%} |")
        if len(seeds) > 1:
            mean = {k: sum(r[k] for r in seeds.values()) / len(seeds) for k in ("usage", "perplexity", "psnr", "ssim")}
            lines.append(f"| **{variant}** | mean of {len(seeds)} | **{mean['usage']:.2%}** | | {mean['perplexity']:.1f} | "
                         f"**{mean['psnr']:.2f}** | {mean['ssim']:.3f} | |")
    per_scale = [(variant, seed, r) for variant, seeds in runs.items() for seed, r in sorted(seeds.items())
                 if r.get("levels")]
    if per_scale:
        first = per_scale[0][2]["levels"]
        labels = [level["label"].removeprefix("scale ") for level in first]
        lines += ["", "Per scale: perplexity (usage) of each run; tokens per code in the first row.", "",
                  "| variant | seed | " + " | ".join(labels) + " |", "| --- | --- |" + " --- |" * len(labels),
                  "| tokens / code | | " + " | ".join(f"{level['tokens_per_code']:.2f}" for level in first) + " |"]
        for variant, seed, r in per_scale:
            cells = [f"{level['perplexity']:.1f} ({level['usage']:.2%})" for level in r["levels"]]
            lines.append(f"| {variant} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fixtures", "init", "bf16", "labels", "multiscale", "table"))
    parser.add_argument("checkout", nargs="?", help="a checkout of yfChang-cv/FVQ (577b848c); not for `table`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["theirs-dit", "ours-dit", "ours-plain"],
                        choices=("theirs-dit", "ours-dit", "ours-plain"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4, help="the peak lr (their tlr)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup-epochs", type=float, default=0, help="warmup in runs (their VAR default: none)")
    parser.add_argument("--phi-ratio", type=float, default=0.5, help="VAR's quant_resi (0: no phi conv)")
    parser.add_argument("--tag", default="", help="appended to the variant names in --json (e.g. +phi0)")
    parser.add_argument("--eval-limit", type=int, help="evaluate on at most this many held-out tiles")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "authors_multiscale.json"))
    parser.add_argument("--work-dir", default="/tmp/authors_multiscale")
    parser.add_argument("--tables", nargs="+", help="`table`: the JSON files to tabulate (default: --json)")
    args = parser.parse_args()
    if args.command == "table":
        print(table(args.tables or [args.json]))
        return
    if args.checkout is None:
        parser.error(f"{args.command} needs the path of a checkout of the authors' code")
    # This package (diffusers, transformers) is imported before the torchvision stub: transformers reads
    # torchvision's version at import time, and the stub has none.
    import fvq_hf.tokenizer  # noqa: F401
    code = import_their_code(args.checkout)
    if args.command == "fixtures":
        write_fixtures(code)
    elif args.command == "init":
        write_init_fixtures(code)
    elif args.command == "bf16":
        write_bf16_fixtures(code)
    elif args.command == "labels":
        write_label_dropout_fixture(code)
    else:
        multiscale(code, args)


if __name__ == "__main__":
    main()
