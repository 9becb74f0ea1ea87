"""End to end: the real stages, wired by the real ``dvc.yaml``, on a tiny configuration.

The project's ``dvc.yaml``, ``stages/`` and ``src/`` are copied into a scratch git + DVC project, and
``params.yaml`` is shrunk: a tiny local model instead of the bundled one, the ``openai`` generation backend
pointed at a local fake server, two languages, two scale points, a few training steps. ``dvc repro`` must run
every stage (generate -> dedupe -> mine -> train -> evaluate -> plot), a second ``dvc repro`` must do nothing,
and ``dvc exp run -S negatives.hard=false`` must run the ablation end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import build_tiny_model

from tests.generate.fake_openai_server import FakeOpenAIServer
from tests.generate.test_pipeline import reversed_query
from tests.mirror import mirror_or_skip

from retrofit.report.compare import Comparer
from retrofit.report.evaluations import load_evaluations

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
    return res.stdout


def _responder(prompt: str) -> str:
    return json.dumps({"query": reversed_query(prompt.split("Text:\n", 1)[1])}, ensure_ascii=False)


def tiny_params(model_dir: Path, cache: Path, base_url: str) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"].update(cache_dir=str(cache), bf16_inference=False)
    params["model"]["base"] = str(model_dir)
    params["generate"].update(
        # the round trip runs as in the default (top 3), on a pool small enough for the tiny model to pass some
        backend="openai", languages=["de", "zh"], per_language=4, roundtrip_top_k=3, passages_per_language=6,
        task_types={"short_query": 1.0, "title": 1.0},
        openai={**params["generate"]["openai"], "base_url": base_url, "model": "fake", "api_key_env": "FAKE_KEY",
                "concurrency": 2, "timeout_s": 10, "max_retries": 1},
    )
    params["dedupe"]["english_per_source"] = 12
    params["negatives"].update(range_min=0, range_max=6, num_negatives=1)
    params["train"].update(max_steps=2, batch_size=4, checkpoint_every=1, bf16=False, max_seq_length=32,
                           trainable_layers=1)
    params["evaluate"]["trunk_layers"] = 1  # the frozen embeddings and layer 1 of 2: shared by every model
    params["train"]["mix"].update(english=["qed_nq", "snli_via_esnli"], english_per_source=8,
                                  languages=["de", "zh"], task_types=["short_query", "title"], per_language=4)
    params["scale"] = {"per_language": [0, 4]}
    params["runs"] = {
        "seed2": "train.seed=7",
        "seed3": "train.seed=8",
        "nohard": "negatives.hard=false",
        "div_lang": "train.mix.english=[] train.mix.task_types=[short_query] train.mix.per_language=4 train.mix.allow_shortfall=true",
        "div_task": "train.mix.languages=[de] train.mix.english_per_source=2 train.mix.per_language=4",
        "oracle": "train.mix.synthetic_source=oracle",
        "taskbatch": "train.batch_groups=task",
        "crossling": "train.mix.cross_lingual=0.5",
        "scale_0_s2": "train.mix.per_language=0 train.seed=7",  # a second arm with seeds: seed noise in its interval
    }
    params["evaluate"].update(languages=["de", "en", "zh"], max_queries_per_lang=8, batch_size=16, max_seq_length=128,
                              official={"tasks": ["LegalBenchCorporateLobbying"], "base_only": ["BelebeleRetrieval"],
                                        "models": ["base", "scale_0", "scale_4", "seed2", "seed3", "oracle"]},
                              beyond={"tasks": ["KorSTS", "SIB200Classification"], "languages": ["de", "ko"],
                                      "models": ["base", "scale_0", "scale_4", "seed2", "seed3"]})
    params["plot"].update(bootstrap_resamples=200, arm_seeds={"scale_0": ["scale_0_s2"]})
    return params


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "dvc.yaml", proj / "dvc.yaml")
    shutil.copytree(REPO / "stages", proj / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return proj


def _tiny_model_for(mirror: Path, out: Path) -> Path:
    """A tiny random model whose tokenizer covers the evaluation languages (few exact ties between passages)."""
    texts = []
    for lang in ("de", "en", "zh"):
        data = json.loads((mirror / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
        for article in data["data"]:
            for para in article["paragraphs"]:
                texts += [para["context"], *(qa["question"] for qa in para["qas"])]
    return build_tiny_model(out, seed=0, texts=texts)


def test_dvc_repro_tiny(tiny_project: Path, tmp_path: Path):
    mirror = mirror_or_skip()
    tiny_model_dir = _tiny_model_for(mirror, tmp_path / "tiny_model")
    env = {**os.environ, "RETROFIT_DATA_MIRROR": str(mirror), "HF_HUB_OFFLINE": "1", "FAKE_KEY": "fake-key"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    dvc = (sys.executable, "-m", "dvc")
    with FakeOpenAIServer(responder=_responder, lifetime_s=600, max_requests=5000) as server:
        params = tiny_params(tiny_model_dir, tmp_path / "cache", server.url)
        (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _run("git", "init", "-q", "-b", "main", cwd=tiny_project, env=env)
        _run("git", "config", "user.email", "ci@example.org", cwd=tiny_project, env=env)
        _run("git", "config", "user.name", "CI", cwd=tiny_project, env=env)
        _run(*dvc, "init", "-q", cwd=tiny_project, env=env)
        _run(*dvc, "config", "core.analytics", "false", cwd=tiny_project, env=env)
        shutil.copytree(REPO / ".dvc" / "plots", tiny_project / ".dvc" / "plots")  # the custom plot templates
        _run("git", "add", "-A", cwd=tiny_project, env=env)
        _run("git", "commit", "-qm", "tiny pipeline", cwd=tiny_project, env=env)
        _run(*dvc, "repro", cwd=tiny_project, env=env)

        results = (tiny_project / "reports/RESULTS.md").read_text()
        assert "## Findings" in results and "hard negatives are essential" in results
        findings = json.loads((tiny_project / "reports/results/findings.json").read_text())
        assert set(findings["findings"]) >= {"plateau", "hard_negatives", "task_over_language_diversity"}
        assert findings["seed_sd"]["primary"] is not None and findings["seed_models"] == ["scale_4", "seed2", "seed3"]
        assert findings["findings"]["hard_negatives"]["noise"] == "one seed: query noise only"  # nohard ran once
        gain = findings["findings"]["gain_from_synthetic"]  # scale_4 (3 seeds) - scale_0 (2 seeds): both noises
        assert gain["noise"] == "seeds and questions" and (gain["seeds_a"], gain["seeds_b"]) == (3, 2)
        for run in ("taskbatch", "crossling"):
            assert f"(`scale_4` - `{run}`)" in results, run
        # on real per-query files: a mean of mono and cross, under draws of questions shared by all three, is never
        # more uncertain than the more uncertain of the two (the old row-wise resampling broke this)
        evals = load_evaluations(tiny_project / "reports/eval", ["base", "scale_0", "scale_4", "seed2", "nohard"])
        cmp = Comparer(evals, {}, "scale_4", resamples=300, seed=0)
        for name in evals:
            width = {m: (lambda iv: iv[1] - iv[0])(cmp.own_interval(name, m)) for m in ("primary", "mono", "cross")}
            assert width["primary"] <= max(width["mono"], width["cross"]) + 0.02, (name, width)
        for name in ("base", "scale_0", "scale_4", "seed2", "seed3", "nohard", "div_lang", "div_task", "oracle"):
            metrics = json.loads((tiny_project / f"reports/eval/{name}/metrics.json").read_text())
            assert set(metrics["families"]) == {"mono", "cross", "pooled"} and metrics["max_seq_length"] == 128
            timing = json.loads((tiny_project / f"reports/eval/{name}/stage_timing.json").read_text())
            assert timing["backend"] == "openvino"  # auto, in fp32 (bf16_inference: false)
            if name != "base":  # every retrofit reads the frozen trunk the base's evaluation stored
                assert timing["trunk_cache"]["misses"] == 0 < timing["trunk_cache"]["hits"], name
            if name in ("nohard", "div_lang", "div_task"):  # not in evaluate.official.models
                assert not (tiny_project / f"reports/eval/{name}/official").exists(), name
                continue
            official = json.loads((tiny_project / f"reports/eval/{name}/official/metrics.json").read_text())
            want = {"LegalBenchCorporateLobbying"} | ({"BelebeleRetrieval"} if name == "base" else set())
            assert set(official["tasks"]) == want, name  # base-only tasks run for the base model alone
        for name in ("base", "scale_0", "scale_4", "seed2", "seed3"):  # evaluate.beyond.models alone
            beyond = json.loads((tiny_project / f"reports/eval/{name}/beyond/metrics.json").read_text())
            assert beyond["tasks"]["SIB200Classification"]["seen"] == {"deu_Latn": "seen", "kor_Hang": "unseen"}
        assert not (tiny_project / "reports/eval/nohard/beyond").exists()
        cost = [r for r in findings["cost"] if r["model"] == "scale_4"]
        assert {r["cell"] for r in cost} == {"retrieval: primary (mono+cross)", "STS, unseen languages",
                                             "classification, seen languages", "classification, unseen languages"}
        assert all(r["seeds"] == 3 and r["noise"] == "seeds and questions" for r in cost)
        assert "## The cost of retrofitting" in results and (tiny_project / "reports/results/cost.csv").is_file()
        assert "## Oracle: human questions at the same counts (`scale_4` - `oracle`)" in results
        assert "## Hard negatives: teacher scores" in results and "| random negative |" in results
        # the round trip ran as in the default (top 3, here of a 6-passage pool): it embedded every query it judged
        generated = json.loads((tiny_project / "data/generated/metrics.json").read_text())
        ledger = json.loads((tiny_project / "reports/generate/ledger.json").read_text())
        assert generated["roundtrip_top_k"] == 3 and generated["examples"] > 0
        pool = 2 * 6  # passages_per_language in each of the two languages
        assert ledger["round_trip_work"]["texts"] > pool, ledger["round_trip_work"]  # the queries were embedded too
        info = json.loads((tiny_project / "reports/train/scale_4/info.json").read_text())
        by_lang = info["mixture"]["synthetic_by_lang"]
        assert set(by_lang) == {"de", "zh"} and all(1 <= n <= 4 for n in by_lang.values()) and info["steps"] == 2
        oracle_info = json.loads((tiny_project / "reports/train/oracle/info.json").read_text())
        assert oracle_info["mixture"]["synthetic_by_lang"] == by_lang  # the same slots, human questions in them
        assert oracle_info["mixture"]["by_group"].get("oracle_short_query") == sum(by_lang.values())  # all questions
        assert "scale_4 | " in results and "[" in results.split("## Findings")[1]  # intervals are printed
        assert json.loads((tiny_project / "reports/train/scale_0/info.json").read_text())["mixture"][
            "synthetic_by_lang"] == {}
        assert "up to date" in _run(*dvc, "repro", cwd=tiny_project, env=env).lower()
        shown = _run(*dvc, "metrics", "show", "reports/results/models.json", cwd=tiny_project, env=env)
        assert all(f"{m}.primary" in shown for m in ("base", "scale_0", "nohard", "div_task"))  # every model's score

        # The ablation as an experiment: only mine and the stages after it rerun; generation is reused.
        requests_before = len(server.attempts)
        _run("git", "add", "-A", cwd=tiny_project, env=env)
        _run("git", "commit", "-qm", "tiny pipeline, reproduced", cwd=tiny_project, env=env)
        out = _run(*dvc, "exp", "run", "-S", "negatives.hard=false", cwd=tiny_project, env=env)
        assert "Running stage 'generate'" not in out and "Stage 'generate' didn't change" in out
        assert len(server.attempts) == requests_before, "the experiment re-ran generation"
        shown = _run(*dvc, "exp", "show", "--no-pager", "--csv", cwd=tiny_project, env=env)
        assert "negatives.hard" in shown
