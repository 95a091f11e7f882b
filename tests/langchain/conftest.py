"""Fixtures for the LangChain tests: scripted members, a deterministic ranker and a run recorder."""

from __future__ import annotations

import pytest
from lc_fakes import JoinFuser, LengthRanker, RunRecorder, ScriptedChatModel


@pytest.fixture
def members() -> dict[str, ScriptedChatModel]:
    return {
        "alpha": ScriptedChatModel(model_name="alpha", prefix="Alpha:"),
        "beta": ScriptedChatModel(model_name="beta", prefix="Beta says, at length:"),
    }


@pytest.fixture
def ranker() -> LengthRanker:
    return LengthRanker()


@pytest.fixture
def fuser() -> JoinFuser:
    return JoinFuser()


@pytest.fixture
def recorder() -> RunRecorder:
    return RunRecorder()
