"""Offline detection: a hub id that is not cached fails fast with one error, eager or lazy."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from blender_core import hub

MISSING = "nobody-here/not-a-cached-model"


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget earlier probes of the hub endpoint."""
    monkeypatch.setattr(hub, "_probed", {})


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, fresh_probe: None) -> str:
    """Online mode, but the endpoint is a local port that nobody listens on."""
    from huggingface_hub import constants

    with socket.socket() as sock:  # a free port, closed again: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    return endpoint


def _cache_repo(cache: Path, repo_id: str, source: Path) -> None:
    """Lay ``source``'s files out as a cached snapshot of ``repo_id`` (the hub cache layout)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_offline_env_gives_the_reason_without_any_request(fresh_probe: None) -> None:
    # tests/conftest.py sets HF_HUB_OFFLINE=1 for the suite
    assert hub.hub_unavailable_reason() == "HF_HUB_OFFLINE=1 is set (offline mode)"
    assert hub._probed == {}


def test_paths_and_non_hub_ids_are_left_to_the_caller(tmp_path: Path) -> None:
    assert hub.local_snapshot(tmp_path) is None
    assert hub.local_snapshot("consensus") is None
    assert hub.local_snapshot("a/b/c") is None


def test_offline_missing_model_raises_without_a_request(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[dict[str, object]] = []
    real = huggingface_hub.snapshot_download

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    monkeypatch.setattr(hub, "_probe", lambda endpoint: pytest.fail("probed while offline"))
    with pytest.raises(hub.HubUnavailableError, match="GenFuser checkpoint is not in the local"):
        hub.local_snapshot(MISSING, what="GenFuser checkpoint")
    assert [c["local_files_only"] for c in calls] == [True]  # the cache only: no retries


def test_unreachable_hub_is_probed_once_and_refused(unreachable_hub: str, hub_cache: Path) -> None:
    with pytest.raises(hub.HubUnavailableError) as caught:
        hub.local_snapshot(MISSING)
    message = str(caught.value)
    assert f"the hub at {unreachable_hub} is unreachable" in message
    assert f"hf download {MISSING}" in message
    assert list(hub._probed) == [unreachable_hub]
    with pytest.raises(hub.HubUnavailableError):  # the kept answer: no second probe needed
        hub.local_snapshot(MISSING)
    assert list(hub._probed) == [unreachable_hub]


def test_cached_pairranker_loads_while_the_hub_is_unreachable(
    unreachable_hub: str, hub_cache: Path, tiny_pairrm_dir: Path
) -> None:
    from blender_core import PairRanker

    _cache_repo(hub_cache, "someone/tiny-pairrm", tiny_pairrm_dir)
    ranker = PairRanker.from_pretrained("someone/tiny-pairrm", device="cpu")
    assert ranker.rank("hi", ["a", "b"]).order in ((0, 1), (1, 0))


def test_cached_genfuser_loads_offline(hub_cache: Path, tiny_genfuser_dir: Path) -> None:
    from blender_core.fusion.gen_fuser import GenFuser

    _cache_repo(hub_cache, "someone/tiny-fuser", tiny_genfuser_dir)
    assert GenFuser.from_pretrained("someone/tiny-fuser", device="cpu") is not None


def _error(call: object) -> str:
    assert callable(call)
    with pytest.raises(ValueError) as caught:  # CheckpointError, a ValueError
        call()
    return str(caught.value)


def test_eager_and_lazy_loading_give_the_same_error(hub_cache: Path) -> None:
    from langchain_core.language_models import FakeListChatModel

    from blender_core import Blender
    from blender_core.generators.callable import CallableGenerator
    from langchain_blender import ChatBlender
    from langchain_blender import PairRankerRerank as LangChainRerank
    from llamaindex_blender import PairRankerRerank as LlamaIndexRerank

    member = CallableGenerator(lambda prompt: "an answer", name="m")
    eager = _error(lambda: Blender([member], ranker=MISSING))
    chat = ChatBlender(models=[FakeListChatModel(responses=["x"])], ranker=MISSING)  # no load yet
    lazy_chat = _error(lambda: chat.invoke("hi"))
    lc_rerank = LangChainRerank(model=MISSING)
    lazy_lc = _error(lambda: lc_rerank.rerank(["a", "b"], "query"))
    li_rerank = LlamaIndexRerank(model=MISSING)
    lazy_li = _error(li_rerank.load)
    assert "not in the local Hugging Face cache" in eager
    assert eager == lazy_chat == lazy_lc == lazy_li
