"""Model CPU offload, wired as diffusers' pipelines wire it: `encode` / `decode` / `tokenize` / `detokenize` run the
offload hook, inputs go to the execution device, hooks are freed after a call, the KV cache follows the inputs.

On a CPU machine the hooks are installed with `device="cpu"`: the device moves are no-ops, but every call path
through the hooks runs. The accelerator test repeats it where one exists."""

import pytest
import torch
from accelerate.hooks import CpuOffload

from fvq_hf import FVQGenerationPipeline, FVQPipeline

from ..helpers import make_tiny_model, make_tiny_transformer, perturb_bridge


def tokenizer_pipeline() -> FVQPipeline:
    model = make_tiny_model()
    perturb_bridge(model)
    return FVQPipeline(vq=model.eval())


@pytest.fixture
def hook_calls(monkeypatch) -> list:
    """The modules whose offload hook ran, in order (the hooks are rebuilt after each call, so count on the class)."""
    calls, pre_forward = [], CpuOffload.pre_forward
    monkeypatch.setattr(CpuOffload, "pre_forward", lambda self, m, *a, **k: (calls.append(type(m).__name__),
                                                                              pre_forward(self, m, *a, **k))[1])
    return calls


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA accelerator"))])
def test_the_tokenizer_pipeline_runs_with_model_cpu_offload(device, hook_calls):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    pipe = tokenizer_pipeline()
    expected = pipe(images, output_type="pt")
    pipe.enable_model_cpu_offload(device=device)
    assert pipe._execution_device.type == device
    out = pipe(images, output_type="pt")
    assert hook_calls == ["FVQModel", "FVQModel"]  # encode and decode, which are not forward
    assert torch.equal(out.indices.cpu(), expected.indices)
    torch.testing.assert_close(out.images.cpu(), expected.images, atol=1e-4, rtol=0)
    assert torch.equal(pipe.tokenize(images).cpu(), expected.indices)
    torch.testing.assert_close(pipe.detokenize(expected.indices, output_type="pt").cpu(), expected.images, atol=1e-4,
                               rtol=0)
    # and tokenize, detokenize (once each: detokenize decodes through the internal path, not the hooked `decode`,
    # whose meaning depends on `lookup_from_codebook`)
    assert hook_calls == ["FVQModel"] * 4


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA accelerator"))])
def test_the_generation_pipeline_runs_with_model_cpu_offload(device, hook_calls):
    pipe = FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=make_tiny_model().eval())
    pipe.set_progress_bar_config(disable=True)
    sample = lambda: pipe([0, 2], temperature=0, output_type="pt").indices.cpu()  # noqa: E731
    expected = sample()
    pipe.enable_model_cpu_offload(device=device)
    assert torch.equal(sample(), expected)
    assert hook_calls[0] == "FVQTransformer" and hook_calls[-1] == "FVQModel"  # detokenize ran the tokenizer's hook


def test_kv_cache_is_made_on_the_given_device():
    transformer = make_tiny_transformer()
    assert transformer.make_cache(2).keys.device == transformer.output.weight.device
    assert transformer.make_cache(2, torch.device("meta")).keys.device.type == "meta"
