"""The benchmark scripts run end to end at tiny sizes, so they do not rot (their figures live in RESULTS.md)."""

import json
import os
import re
import subprocess
import sys

import pytest

from ..helpers import ROOT

BENCHMARKS = ROOT / "benchmarks"


def _run(script: str, *args: str, timeout: int = 600, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_nearest_code_search(tmp_path):
    methods = ["faiss", "fvq-auto", "fvq-torch", "kernel:portable:register", "kernel:portable:tile",
               "kernel:portable:screen", "cdist", "vqtorch"]
    # fvq-auto held to the portable kernel: the benchmark must say so and measure the row against that ISA's peak.
    out = _run("nearest_code_search.py", "--tokens", "300", "--codebook-sizes", "2048", "--dims", "8", "--repeats",
               "1", "--methods", *methods, "--json", str(tmp_path / "s.json"), env={"FVQ_HF_SEARCH_ISA": "portable"})
    result = json.loads((tmp_path / "s.json").read_text())
    rows = result["rows"]
    assert [r["method"] for r in rows] == methods
    assert all("error" not in r for r in rows) and result["fma_peaks"]["portable"] > 0
    assert result["isa"] in result["fma_peaks"] and result["machine_peak"] == result["fma_peaks"][result["isa"]]
    assert len({r["checksum"] for r in rows}) == 1  # the eight searches agree
    assert "| 2,048 | 8 | 300 | kernel:portable:tile |" in out and "| NO |" not in out
    assert f"widest ISA {result['isa']}" in out
    assert result["search_isa"] == "portable" and "fvq-auto runs the portable kernel" in out
    assert re.search(r"^\| 2,048 \| 8 \| 300 \| fvq-auto \|( [^|]* \|){4} \d+\.\d% \|", out, re.M)
    assert result["faiss"]["compile_options"] and f"FAISS: SIMD level {result['faiss']['simd_level']}" in out
    # A method that would hold more than --max-gib of distances is skipped, and says so.
    out = _run("nearest_code_search.py", "--tokens", "300", "--codebook-sizes", "2048", "--dims", "8", "--repeats",
               "1", "--methods", "cdist", "--max-gib", "0.001")
    assert "skipped: holds" in out


@pytest.mark.slow
def test_tokenize_speed(tmp_path):
    out = _run("tokenize_speed.py", "--quick", "--backends", "kernel", "torch", "--json", str(tmp_path / "t.json"))
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert set(rows) == {"kernel", "torch"} and all(0 < r["search_s"] < r["tokenize_s"] for r in rows.values())
    assert "kernel: tokenize" in out


@pytest.mark.slow
def test_quantizer_comparison(tmp_path):
    out = _run("quantizer_comparison.py", "--codebook-sizes", "256", "--steps", "2", "--sweep-lrs", "1e-3",
               "--quantizers", "none", "linear", "mlp", "vqbridge", "vqtorch-ema", "--ablation-size", "256",
               "--ablation-quantizers", "vqbridge", "--eval-limit", "64", "--json", str(tmp_path / "q.json"), "--plots",
               str(tmp_path / "q"))
    results = json.loads((tmp_path / "q.json").read_text())
    assert len(results["runs"]) == 5 and len(results["sweep"]) == 5 and len(results["ablation"]) == 1
    assert (tmp_path / "q-vs-k.png").exists() and (tmp_path / "q-annealing.png").exists()
    assert "| 256 | vqtorch-ema |" in out and "usage over steps, vqbridge/const" in out


@pytest.mark.slow
def test_quantizer_types(tmp_path):
    rows = ["vq", "multiscale+vqbridge", "multiscale+dit", "vqtorch-residual", "vqtorch-vqbridge"]
    out = _run("quantizer_types.py", "--steps", "2", "--eval-limit", "32", "--rows", *rows, "--json",
               str(tmp_path / "t.json"), "--plot", str(tmp_path / "t.png"))
    results = json.loads((tmp_path / "t.json").read_text())
    assert list(results) == rows and (tmp_path / "t.png").exists()
    assert [results[r]["tokens_per_image"] for r in rows] == [64, *[1 + 4 + 9 + 16 + 25 + 36 + 64] * 2, 256, 64]
    assert [level["label"] for level in results["multiscale+vqbridge"]["levels"]] == \
        [f"scale {s}x{s}" for s in (1, 2, 3, 4, 5, 6, 8)]
    assert [level["num_tokens"] for level in results["vqtorch-residual"]["levels"]] == [32 * 64] * 4
    assert "| multiscale | VQBridge | 155 |" in out and "| vqtorch | VQBridge | 64 |" in out
    assert "| multiscale | DiT QBridge-S/4 | 155 |" in out


@pytest.mark.slow
def test_bridge_cost(tmp_path):
    out = _run("bridge_cost.py", "--quick", "--json", str(tmp_path / "c.json"))
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["bridge"][0]["variant"] == "fvq-16k" and result["bridge"][0]["seconds"] > 0
    assert "| fvq-16k |" in out


@pytest.mark.slow
def test_generation_speed(tmp_path):
    out = _run("generation_speed.py", "--quick", "--batch-size", "2", "--json", str(tmp_path / "g.json"))
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert [r["cache"] for r in rows] == [True, False] and all(r["tokens"] == 2 * 64 for r in rows)
    assert rows[0]["checksum"] == rows[1]["checksum"]
    assert "same greedy tokens with and without the cache: True" in out


def test_generator_baselines(tmp_path):
    from fvq_hf.training.codes import extract_codes

    from ..helpers import make_tiny_model, perturb_bridge, write_images

    tokenizer = make_tiny_model().eval()
    perturb_bridge(tokenizer)
    tokenizer.save_pretrained(tmp_path / "tok")
    for split, seed in (("train", 0), ("heldout", 5)):
        for name in ("a", "b"):
            write_images(tmp_path / split / name, count=3, seed=seed + len(name))
        extract_codes(str(tmp_path / "tok"), str(tmp_path / split), tmp_path / f"codes-{split}", num_workers=0)
    out = _run("generator_baselines.py", "--codes", str(tmp_path / "codes-train"), "--eval-codes",
               str(tmp_path / "codes-heldout"))
    results = json.loads(out.strip().splitlines()[-1])
    assert results["num_tokens"] == 6 * 2 * 64 and abs(results["uniform"] - 5.545) < 1e-3  # ln 256
    assert results["code_frequencies"] > 0 and results["per_class_code_frequencies"] > 0


@pytest.mark.slow
def test_gradient_checkpointing(tmp_path):
    out = _run("gradient_checkpointing.py", "--quick", "--json", str(tmp_path / "g.json"))
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert [r["checkpointing"] for r in rows] == [False, True, False, True] and all("error" not in r for r in rows)
    assert "| fvq-cpu-4k, batch 2 at 64 px | on |" in out


@pytest.mark.slow
def test_codebook_memory(tmp_path):
    out = _run("codebook_memory.py", "--quick", "--json", str(tmp_path / "m.json"))
    rows = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert [r["crops"] for r in rows] == [2, 8] and all("error" not in r for r in rows)
    # 14 photos x crops x 64 vectors offered; the cap (2,000) holds once they are more
    assert rows[0]["held"] == rows[0]["offered"] == 1792 and rows[1]["held"] == 2000 < rows[1]["offered"] == 7168
    assert [r["images"] for r in rows] == [28, 112]  # crops encoded: 14 photos x crops
    assert "| 8 | 112 | 7,168 | 2,000 |" in out


@pytest.mark.slow
def test_latent_generation(tmp_path):
    from fvq_hf.training.codes import extract_codes

    from ..helpers import make_tiny_model, perturb_bridge, write_images

    tokenizer = make_tiny_model().eval()
    perturb_bridge(tokenizer)
    tokenizer.save_pretrained(tmp_path / "tok")
    for name, seed in (("a", 0), ("b", 1)):
        write_images(tmp_path / "data" / name, count=3, seed=seed)
    extract_codes(str(tmp_path / "tok"), str(tmp_path / "data"), tmp_path / "lat", num_workers=0, latents=True)
    out = _run("latent_generation.py", "quality", "--tokenizer", str(tmp_path / "tok"), "--latents",
               str(tmp_path / "lat"), "--eval-latents", str(tmp_path / "lat"), "--seeds", "0", "--presets",
               "latent-sit-cpu", "--max-steps", "2", "--batch-size", "2", "--samples", "1", "--steps", "2",
               "--work", str(tmp_path / "work"), "--output", str(tmp_path / "q.json"))
    row = json.loads((tmp_path / "q.json").read_text())["rows"][0]
    assert row["steps"] == 2 and set(row["guidance"]) == {"1.0", "4.0"} and '"preset": "latent-sit-cpu"' in out
    out = _run("latent_generation.py", "speed", "--latents", str(tmp_path / "lat"), "--batch-size", "2", "--warmup",
               "1", "--timed", "2", "--work", str(tmp_path / "work"))
    assert json.loads(out.strip().splitlines()[-1])["bare_loop_s_per_step"] > 0


@pytest.mark.slow
def test_vqgan_lc_side_by_side(tmp_path):
    from fvq_hf import FVQModel

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    FVQModel.from_config(FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")).save_pretrained(tmp_path / "enc")
    out = _run("vqgan_lc_side_by_side.py", "--encoder", str(tmp_path / "enc"), "--codebook-sizes", "256", "--seeds",
               "0", "1", "--steps", "1", "--eval-limit", "8", "--eval-tiles", "4", "--random-crops", "1",
               "--kmeans-iterations", "2", "--tables", str(tmp_path / "tables"), "--json", str(tmp_path / "s.json"))
    results = json.loads((tmp_path / "s.json").read_text())
    assert len(results["runs"]) == 7 * 2 and set(results["tables"]) == {"kmeans-256", "selection-256"}
    assert json.loads(results["tables"]["selection-256"]["kmeans"])["iterations"] == [0] * 14
    assert all(r["heldout"]["num_tokens"] == 4 * 64 for r in results["runs"].values())
    assert "| 256 | lc-kmeans-their-loss | 2 |" in out and "| 256 | none | 2 |" in out
    arms = {r["arm"]: r["model"] for r in results["runs"].values()}
    assert arms["lc-kmeans"]["freeze_table"] is True and arms["lc-kmeans"]["table_moved"] == 0
    assert arms["lc-kmeans-trained"]["freeze_table"] is False and arms["lc-kmeans-trained"]["table_moved"] > 0
    assert (arms["lc-kmeans"]["codebook_weight"], arms["lc-kmeans"]["commitment_weight"]) == (1.0, 0.25)
    assert arms["lc-kmeans-their-loss"]["codebook_weight"] == pytest.approx(0.033)
    assert arms["lc-kmeans-their-loss"]["commitment_weight"] == pytest.approx(0.1)
    assert (arms["lc-random"]["table"], arms["lc-selection"]["table"]) == ("random", "selection")
    assert arms["vqbridge"]["bridge_type"] == "vqbridge" and arms["none"]["bridge_type"] == "none"


def test_authors_multiscale_table():
    """The committed multi-scale runs tabulate: the pooled rows of the first runs (older files, per-level usage only)
    and the per-scale table of the re-runs, with each scale's tokens per code (RESULTS, "Per scale")."""
    out = _run("authors_training.py", "table", "--tables", str(BENCHMARKS / "authors_multiscale.json"),
               str(BENCHMARKS / "authors_multiscale_per_scale.json"))
    assert "| theirs-dit | 0 | 18.07% | 272 | 4.4 | 20.06 | 0.468 | 0.59% / 17.50% |" in out
    assert "| tokens / code | | 1.75 | 7.02 | 15.79 | 28.08 | 43.87 | 63.18 | 112.31 |" in out
    assert "| ours-dit+phi0 | 1 | 7.3 (0.76%) | 60.9 (12.13%) |" in out
    assert out.count("| ours-plain | ") == 3 + 3  # 3 seeds, pooled and per scale
