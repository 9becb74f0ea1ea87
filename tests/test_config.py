"""Params validation: unknown keys, wrong types and unsupported languages fail with the key's name."""

from pathlib import Path

import pytest
import yaml

from retrofit.config import ParamsError, load_params, validate_params

REPO = Path(__file__).resolve().parents[1]


def _with(changes: dict) -> dict:
    """The repository's params.yaml with ``changes`` merged in, group by group."""

    def merge(base, over):
        if not (isinstance(base, dict) and isinstance(over, dict)):
            return over
        return {k: merge(base.get(k), v) if k in base else v for k, v in {**base, **over}.items()}

    return merge(yaml.safe_load((REPO / "params.yaml").read_text()), changes)


def test_repo_params_validate():
    params = load_params(REPO / "params.yaml")
    assert params.base.threads == "auto" and params.base.bf16_inference == "auto"
    assert "en" in params.evaluate.languages


def test_params_yaml_is_the_only_source_of_defaults():
    """No params model invents a value: every field is required, so params.yaml must (and does) give it."""
    from pydantic import BaseModel

    from retrofit.config import HubEnglishSpec, Params

    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            if not field.is_required():
                found.append(f"{prefix}{name}")
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                found += walk(ann, f"{prefix}{name}.")
        return found

    assert walk(Params, "") == []
    assert walk(HubEnglishSpec, "data.hub_english.<name>.") == []  # its gaps come from data.hub_english_defaults


def test_hub_english_entries_take_the_defaults_of_params_yaml():
    params = validate_params(_with({"data": {"hub_english": {"toy": {"dataset": "org/toy", "task_type": "qa",
                                                                     "split": "dev"}}}}))
    toy = params.data.hub_english["toy"]
    assert (toy.split, toy.config, toy.streaming) == ("dev", None, False)
    with pytest.raises(ParamsError, match=r"data.hub_english.toy.task_type: Field required"):
        validate_params(_with({"data": {"hub_english": {"toy": {"dataset": "org/toy"}}}}))


def test_a_key_missing_from_params_yaml_is_named():
    raw = _with({})
    del raw["train"]["temperature"]
    with pytest.raises(ParamsError, match=r"train.temperature: Field required"):
        validate_params(raw)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"data": {"test_artcles": 3}}, "data.test_artcles"),
        ({"bogus": {}}, "bogus"),
        ({"data": {"test_articles": "many"}}, "data.test_articles"),
        ({"data": {"test_articles": -1}}, "data.test_articles"),
        ({"base": {"languages": ["de", "xx"]}}, "base.languages"),
        ({"evaluate": {"languages": ["sw"]}}, "evaluate.languages"),
        ({"evaluate": {"families": ["mono", "bilingual"]}}, "evaluate.families"),
        ({"data": {"english": ["msmarco"]}}, "data.english"),
        ({"train": {"launcher": "python; rm -rf /"}}, "train.launcher"),
        ({"train": {"launcher": "torchrun --nproc_per_node $(nproc)"}}, "train.launcher"),
        ({"train": {"launcher": "deepspeed"}}, "train.launcher"),
        ({"evaluate": {"mmteb": {"data": "local", "tasks": ["MIRACLRetrieval"]}}}, "evaluate.mmteb"),
        ({"evaluate": {"mmteb": {"data": "local", "tasks": None}}}, "evaluate.mmteb"),
        ({"generate": {"wikipedia": {"dataset": "wikimedia/wikipedia", "date": "2023-11-01"}}},
         "generate.wikipedia.date"),
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ParamsError) as info:
        validate_params(_with(raw))
    assert f"params.yaml: {key}" in str(info.value)


@pytest.mark.parametrize(
    "launcher", ["python", "torchrun --nproc_per_node 2", "torchrun --nproc_per_node gpu",
                 "accelerate launch --num_processes 4", "torchrun --nnodes=1 --nproc_per_node=8"],
)
def test_train_launchers_that_dvc_yaml_may_run(launcher):
    assert validate_params(_with({"train": {"launcher": launcher}})).train.launcher == launcher


def test_cross_family_needs_english():
    with pytest.raises(ParamsError, match="evaluate"):
        validate_params(_with({"evaluate": {"languages": ["de", "zh"], "families": ["cross"]}}))


def test_load_params_errors(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(listy)


def test_official_models_must_name_models():
    ok = validate_params(_with({"scale": {"per_language": [0, 4, 12]},
                                "runs": {"oracle": "train.mix.synthetic_source=oracle"},
                                "evaluate": {"official": {"models": ["base", "scale_4", "oracle"]},
                                             "beyond": {"models": ["base", "scale_4"]}}}))
    assert ok.evaluate.official.models == ["base", "scale_4", "oracle"]
    with pytest.raises(ParamsError, match=r"evaluate.official.models: \['scale_5'\] are not models"):
        validate_params(_with({"scale": {"per_language": [0, 4, 12]}, "evaluate": {"official": {"models": ["scale_5"]},
                                                                              "beyond": {"models": None}}}))
    with pytest.raises(ParamsError, match="train.batch_groups"):
        validate_params(_with({"train": {"batch_groups": "by_language"}}))


def test_beyond_names_models_tasks_and_languages():
    ok = validate_params(_with({"evaluate": {"beyond": {"models": None, "languages": None}}}))
    assert ok.evaluate.beyond.models is None and ok.evaluate.beyond.languages is None
    with pytest.raises(ParamsError, match=r"evaluate.beyond.models: \['scale_5'\] are not models"):
        validate_params(_with({"evaluate": {"beyond": {"models": ["scale_5"]}}}))
    with pytest.raises(ParamsError, match="unknown beyond task"):
        validate_params(_with({"evaluate": {"beyond": {"tasks": ["SICK-R"]}}}))
    with pytest.raises(ParamsError, match="unknown beyond language"):
        validate_params(_with({"evaluate": {"beyond": {"languages": ["xx"]}}}))


def test_arm_seeds_must_name_models_and_the_margin_be_positive():
    ok = validate_params(_with({"runs": {"s2": "train.seed=43"}, "plot": {"arm_seeds": {"scale_0": ["s2"]}}}))
    assert ok.plot.arm_seeds["scale_0"] == ["s2"]  # beside the default's own arms
    with pytest.raises(ParamsError, match=r"plot.arm_seeds.scale_0: \['s9'\] are not models"):
        validate_params(_with({"plot": {"arm_seeds": {"scale_0": ["s9"]}}}))
    with pytest.raises(ParamsError, match="equivalence_margin"):
        validate_params(_with({"plot": {"equivalence_margin": 0}}))
