"""The dry-run plan: offline, with plausible numbers whose units and arithmetic are checked."""

from __future__ import annotations

import json
import math
import numbers
import sys
from pathlib import Path

import pytest
import yaml

from retrofit.profiles import merge_profile_text
from tests.paper import PAPER_TASKS, REPO

sys.path.insert(0, str(REPO / "tools"))
from plan import (  # tools/ is not a package: nothing in src imports the planner
    KNOWN_ENCODERS,
    MFU,
    PEAK_FLOPS_PER_S,
    gpu_hours,
    llm_cost_usd,
    main,
    plan,
    prompt_tokens,
)

#: Every numeric leaf of a plan names its unit in its key: a suffix below, or a count named here.
UNIT_SUFFIXES = (
    "_usd", "_tokens", "_flops", "_gpu_hours", "gpu_hours", "_gpu_hours_optimistic", "_wall_hours", "wall_hours",
    "_bytes", "_rows", "_requests", "_texts", "_fraction", "_per_s", "_s", "params", "_per_model", "_per_device",
    "_per_request", "_on_gpus", "_optimistic", "_chars", "_on_one_gpu", "_per_token",
)
COUNTS = {"documents", "queries", "unique_documents", "unique_queries", "models", "steps", "gpus", "max_seq_length",
          "document_tokens", "query_tokens"}


@pytest.fixture(scope="module")
def paper_raw() -> dict:
    """params.yaml with the paper profile merged in (plain data; nothing written)."""
    _, raw, _ = merge_profile_text(
        (REPO / "params.yaml").read_text(), (REPO / "profiles" / "paper.yaml").read_text(), "profiles/paper.yaml"
    )
    return raw


@pytest.fixture(scope="module")
def paper_plan(paper_raw: dict) -> dict:
    return plan(paper_raw)


def _numeric_leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numeric_leaves(v, (*path, str(k)))
    elif isinstance(node, numbers.Number) and not isinstance(node, bool):
        yield path, node


def test_units_are_in_the_keys(paper_plan: dict):
    runs = set(paper_plan["stages"]["train"]["runs"])
    tasks = set(paper_plan["stages"]["evaluate"]["mmteb"]["tasks"])
    bad = []
    for path, value in _numeric_leaves(paper_plan):
        key = path[-1]
        if key in runs or key in tasks:
            continue
        if not (key in COUNTS or key.endswith(UNIT_SUFFIXES) or key == "batch_size_per_device"):
            bad.append(".".join(path))
        assert math.isfinite(value) and value >= 0, ".".join(path)
    assert bad == []


def test_generation_cost_is_tokens_times_price(paper_plan: dict):
    g = paper_plan["stages"]["generate"]
    assert g["expected_requests"] == 20 * math.ceil(8000 * 1.5)
    assert g["target_rows"] == 20 * 8000
    assert g["price_per_1m_input_usd"] == 0.15 and g["price_per_1m_output_usd"] == 0.60
    # nothing passes, then 3 top-up rounds of 20 x per_language per language: 240,000 + 3 x 20 x 160,000
    assert g["cap_requests"] == 240_000 + 3 * 20 * 20 * 8000
    # pinned token totals (the template's size is checked against the real prompts below), priced by hand:
    # 100.732M input x $0.15/M + 8.628M output x $0.60/M = $15.1098 + $5.1768
    assert g["input_tokens"] == 100_732_000 and g["output_tokens"] == 8_628_000
    assert g["cost_usd"] == pytest.approx(20.2866)
    # the cap: 41 x the requests at the same tokens per request: 41 x $20.2866
    assert g["cap_cost_usd"] == pytest.approx(41 * 20.2866, abs=0.01)
    # 240,000 requests x 1.5 s / 64 in flight = 5,625 s
    assert g["wall_hours"] == pytest.approx(5625 / 3600)


def test_llm_cost_formula_exact():
    assert llm_cost_usd(1_000_000, 1_000_000, 0.15, 0.60) == pytest.approx(0.75)
    assert llm_cost_usd(0, 0, 0.15, 0.60) == 0


def test_prompt_tokens_follow_the_template():
    from retrofit.generate.openai_request import estimate_prompt_tokens
    from retrofit.generate.prompts import Attributes, instruction_messages

    short, long = prompt_tokens("short_query", "de", 400), prompt_tokens("short_query", "de", 800)
    assert long - short == pytest.approx(100)  # 400 more bytes at 4 bytes per token
    one = estimate_prompt_tokens([
        {"role": r, "content": c}
        for r, c in instruction_messages("short_query", "de", "x" * 400, Attributes("short", "clear", "college"))
    ])
    assert abs(short - one) < 10  # the mean over attributes is close to any one of them


def test_training_numbers(paper_plan: dict, paper_raw: dict):
    train = paper_plan["stages"]["train"]
    expected = [f"scale_{n}" for n in paper_raw["scale"]["per_language"]] + list(paper_raw["runs"])
    assert list(train["runs"]) == expected
    top = train["runs"]["scale_4000"]
    assert top["mixture_rows"] == 7 * 16000 + 20 * 4000 and top["english_rows"] == 7 * 16000
    assert train["runs"]["scale_0"]["synthetic_rows"] == 0
    runs = train["runs"]
    assert runs["div_lang"]["mixture_rows"] == runs["div_task"]["mixture_rows"] == 60000  # equal budgets
    assert train["runs"]["nohard"]["train_tokens"] < top["train_tokens"]  # no hard-negative column
    assert top["examples_seen_per_device"] == 500 * 512
    assert top["train_tokens"] == 500 * 512 * (64 + 2 * 512)
    assert top["epochs_on_one_gpu"] == pytest.approx(256_000 / 192_000, abs=0.01)
    # 2.0947e17 FLOPs at 20% of an H100's 989 TFLOP/s: 2.0947e17 / 1.978e14 s = 1059 s
    assert top["train_flops"] == pytest.approx(2.0946622611456e17)
    assert top["gpu_hours"] == pytest.approx(2.0946622611456e17 / 1.978e14 / 3600)
    assert top["gpu_hours_optimistic"] < top["gpu_hours"]
    assert train["gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in train["runs"].values()))


def test_mfu_matches_the_cited_measurement():
    """561 examples/s (q, pos, neg at length 256, batch 64, bf16) on one H100 for an XLM-R-base shape: ~20% MFU."""
    shape = KNOWN_ENCODERS["intfloat/multilingual-e5-base"]
    flops_per_example = 3 * shape.forward_flops(256, 3)  # forward + backward over three texts
    implied = 561 * flops_per_example / PEAK_FLOPS_PER_S
    assert 0.15 < implied < 0.30 and abs(implied - MFU) < 0.05
    assert gpu_hours(PEAK_FLOPS_PER_S * MFU * 3600) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("intfloat/multilingual-e5-small", 118e6),
        ("intfloat/multilingual-e5-base", 278e6),
        ("intfloat/multilingual-e5-large", 560e6),
    ],
)
def test_parameter_counts_match_the_model_cards(name: str, published: float):
    assert KNOWN_ENCODERS[name].params == pytest.approx(published, rel=0.01)


def test_evaluation_covers_all_18_tasks(paper_plan: dict):
    ev = paper_plan["stages"]["evaluate"]
    assert ev["models"] == 1 + len(paper_plan["stages"]["train"]["runs"])
    tasks = ev["mmteb"]["tasks"]
    assert set(tasks) == PAPER_TASKS and len(tasks) == 18
    for name, t in tasks.items():
        assert t["documents"] > 0 and t["queries"] > 0 and t["document_tokens"] > 0, name
        assert 0 < t["gpu_hours_per_model"] < 1, name
    assert tasks["ArguAna"]["documents"] == 8674 and tasks["ArguAna"]["queries"] == 1406
    # MIRACL's 2.4M passages dominate; truncation at 512 tokens bounds every text
    assert max(tasks, key=lambda n: tasks[n]["document_tokens"]) == "MIRACLRetrievalHardNegatives"
    assert all(t["document_tokens"] <= t["documents"] * 512 for t in tasks.values())
    assert ev["gpu_hours"] == pytest.approx(1.0961, abs=1e-3)  # pinned: every model x the 18 tasks' tokens


def test_totals_and_disk_add_up(paper_plan: dict):
    st, tot = paper_plan["stages"], paper_plan["totals"]
    assert tot["cost_usd"] == st["generate"]["cost_usd"]
    parts = st["generate"]["roundtrip_gpu_hours"] + st["mine"]["gpu_hours"] + st["train"]["gpu_hours"]
    assert tot["gpu_hours"] == pytest.approx(parts + st["evaluate"]["gpu_hours"])
    assert tot["gpu_hours"] == pytest.approx(4.0027, abs=1e-3)  # pinned: docs/paper-scale.md quotes it
    disk = st["disk"]
    assert disk["total_bytes"] == sum(v for k, v in disk.items() if k.endswith("_bytes") and k != "total_bytes")
    assert disk["total_bytes"] == 94_323_498_114  # pinned: docs/paper-scale.md quotes about 94 GB
    for stage in st.values():
        assert stage["does"] and stage["method"]


def test_plan_of_the_embedded_default():
    p = plan(yaml.safe_load((REPO / "params.yaml").read_text()))
    g = p["stages"]["generate"]
    assert g["cost_usd"] == 0 and g["wall_hours"] is None  # the local backend costs nothing
    assert "mmteb" not in p["stages"]["evaluate"]
    assert p["totals"]["gpu_hours"] < 0.1


def test_cli_prints_and_writes_json(tmp_path: Path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    out = tmp_path / "plan.json"
    main(["--params", str(params), "--json", str(out), "--set", "generate.per_language=24"])
    text = capsys.readouterr().out
    assert "== generate" in text and "method:" in text and "== totals" in text
    assert json.loads(out.read_text())["stages"]["generate"]["target_rows"] == 24 * 12
    with pytest.raises(SystemExit) as info:
        main(["--params", str(params), "--set", "train.max_step=3"])
    assert info.value.code == 2
    assert "train.max_step" in capsys.readouterr().err


def test_cli_plans_the_paper_profile(capsys):
    main(["--params", str(REPO / "params.yaml"), "--profile", str(REPO / "profiles" / "paper.yaml"), "--gpus", "4"])
    text = capsys.readouterr().out
    assert "MIRACLRetrievalHardNegatives" in text and "gpt-4o-mini" in text and "on 4 GPU(s)" in text
