"""Every hub asset of the paper-scale profile fails fast offline, with a message naming it and how to provide it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from retrofit import hub
from retrofit.errors import AssetError
from tests.paper import PROFILE


def test_every_hub_asset_of_the_profile_fails_fast_offline(tmp_path: Path):
    """model.base, negatives.teacher and Wikipedia, as the profile names them: each error names the asset."""
    from retrofit.data.passages import wikipedia_passages
    from retrofit.models.load import materialize_base_model

    profile = yaml.safe_load(PROFILE.read_text())
    for key, spec in (("model.base", profile["model"]["base"]), ("negatives.teacher", profile["negatives"]["teacher"])):
        with pytest.raises(AssetError) as info:
            materialize_base_model(spec, tmp_path / spec.replace("/", "_"), param=key)
        assert spec in str(info.value) and key in str(info.value) and "HF_HOME" in str(info.value)
    with pytest.raises(AssetError, match="wikimedia/wikipedia"):
        wikipedia_passages(profile["generate"]["languages"][0], limit=1)


def test_wikipedia_unreachable_hub_fails_in_the_probe(monkeypatch):
    """Online mode with no route to the Hub: one metadata probe fails; no streaming read is attempted."""
    import huggingface_hub

    from retrofit.data.passages import wikipedia_passages

    monkeypatch.setattr(hub, "offline", lambda: False)

    def unreachable(self, repo_id, **kwargs):
        assert kwargs.get("timeout") == hub.PROBE_TIMEOUT_S
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(AssetError, match=r"(?s)wikimedia/wikipedia \(20231101\.sw\).*unreachable.*generate"):
        wikipedia_passages("sw", limit=1)
