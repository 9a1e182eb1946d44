"""FVQ tokenizer demo: reconstructions, token maps and codebook-usage heatmaps.

    python space/app.py                       # serves on 127.0.0.1 (port: GRADIO_SERVER_PORT, default 7860)
    FVQ_MODEL=org/fvq-262k python space/app.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handlers  # noqa: E402  (the Space's own module, next to this file)

TITLE = "FVQ: vector-quantized image tokenizers with 100% codebook utilization"


def _shown(fn):
    """Run a handler; turn its SpaceError (bad input, no model) into a message in the page, not a traceback."""

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except handlers.SpaceError as error:
            raise gr.Error(str(error), print_exception=False) from None

    wrapper.__name__ = fn.__name__
    return wrapper


@_shown
def reconstruct(files, model_name, resolution):
    return handlers.reconstruct([getattr(f, "name", f) for f in files or []], model_name, int(resolution or 0) or None)


@_shown
def usage(source, files, usage_file, model_name, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
    return handlers.codebook_usage(source, [getattr(f, "name", f) for f in files or []],
                                   getattr(usage_file, "name", usage_file), model_name, progress)


def build_demo() -> gr.Blocks:
    model = handlers.default_model()
    with gr.Blocks(title="FVQ tokenizer") as demo:
        gr.Markdown(f"# {TITLE}\nChang et al., arXiv 2509.10140 (ICLR 2026). Tokenize images with an FVQ model, see "
                    "what each token is, and how evenly the whole codebook is used.")
        model_box = gr.Textbox(value=model or "", label="Model (hub id or folder)", elem_id="model")
        if model is None:
            gr.Markdown(handlers.NO_MODEL, elem_id="no-model")
        with gr.Tab("Reconstruct"):
            files = gr.File(file_count="multiple", label="Images (any size and mode)", elem_id="inp")
            if handlers.EXAMPLES:
                gr.Examples([[[str(p)]] for p in handlers.EXAMPLES], inputs=[files], label="Bundled examples")
            resolution = gr.Number(value=0, precision=0, minimum=0, label=(
                f"Reconstruct at (px, square; 0 = the image's short side, up to {handlers.MAX_SIDE}; rounded to the "
                "model's downsample factor). The tokenizer is convolutional: any size works."), elem_id="resolution")
            go = gr.Button("Reconstruct", variant="primary", elem_id="go")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row(equal_height=True):
                original = gr.Image(label="Original (first image)", format="png", elem_id="original")
                reconstruction = gr.Image(label="Reconstruction", format="png", elem_id="reconstruction")
            sheet = gr.Image(label="Every image, in the table's order: original | reconstruction (small ones enlarged)",
                             format="png", elem_id="out")
            table = gr.Dataframe(headers=["image", "size (px)", "PSNR (dB)", "SSIM", "distinct codes", "perplexity"],
                                 label="Per image", elem_id="metrics")
            with gr.Row():
                token_maps = gr.Gallery(label="Token map: each position coloured by its code id", columns=2,
                                        format="png", height="auto", object_fit="contain", elem_id="tokens")
                rarity_maps = gr.Gallery(label="How rare each used code is", columns=2, format="png", height="auto",
                                         object_fit="contain", elem_id="rarity")
            go.click(reconstruct, [files, model_box, resolution],
                     [sheet, original, reconstruction, table, token_maps, rarity_maps, summary], api_name="reconstruct")
        with gr.Tab("Codebook usage"):
            source = gr.Radio(["uploaded images", "examples", "usage file"], value="examples",
                              label="Count codes over", elem_id="source")
            usage_files = gr.File(file_count="multiple", label="Images", elem_id="usage-inp")
            usage_file = gr.File(label="Usage file (fvq-eval --save-usage)", file_types=[".json"],
                                 elem_id="usage-file")
            count = gr.Button("Count codes", variant="primary", elem_id="count")
            usage_summary = gr.Markdown(elem_id="usage-summary")
            with gr.Row():
                heatmap = gr.Image(label="Codebook grid: log uses per code, dead codes red", format="png",
                                   elem_id="heatmap")
                histogram = gr.Image(label="Code frequencies", format="png", elem_id="histogram")
            count.click(usage, [source, usage_files, usage_file, model_box], [heatmap, histogram, usage_summary],
                        api_name="usage")
    return demo


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    build_demo().queue().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), share=False,
                                ssr_mode=False)
