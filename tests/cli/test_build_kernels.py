"""`fvq-build-kernels`: builds the search kernel that searches will use, says where it lives, and turns what cannot
be built into `fvq-build-kernels: error: ...` with exit status 2."""

import functools
import json

import pytest

from fvq_hf.cli.build_kernels import main
from fvq_hf.search import kernel


def test_it_builds_the_kernel_searches_will_use_and_says_where(capsys, monkeypatch):
    # The default cache: the build that the search tests use too (CI pays for it once).
    monkeypatch.delenv(kernel.ISA_ENV, raising=False)
    main([])
    isa = kernel.choose_isa()
    folder = kernel.kernel_folder(isa)
    assert capsys.readouterr().out == f"{isa}: {folder}\n"
    assert json.loads((folder / "manifest.json").read_text())["isa"] == isa


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--isa", "avx9"], {}, "argument --isa: invalid choice: 'avx9'"),
    ([], {kernel.ISA_ENV: "avx9"}, "Unknown search kernel ISA 'avx9' (from the argument or $FVQ_HF_SEARCH_ISA)"),
    (["--isa", "portable"], {"CXX": "/nonexistent"}, "no C++ compiler ('/nonexistent', from $CXX, is not found"),
])
def test_what_cannot_be_built_is_a_user_error(argv, env, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FVQ_HF_KERNEL_CACHE", str(tmp_path))  # empty: the build runs
    monkeypatch.setattr(kernel, "_built", functools.cache(kernel._built.__wrapped__))  # none loaded yet
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("fvq-build-kernels: error: ") and message in err, err
