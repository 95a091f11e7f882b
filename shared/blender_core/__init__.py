"""Framework-free core of LLM-Blender: PairRanker, GenFuser, generators and the Blender pipeline.

Importing this package is cheap: torch and transformers load when a model is first used, and each
public name below is imported from its module on first access.

Example:
    .. code-block:: python

        from blender_core import PairRanker

        ranker = PairRanker.from_pretrained("llm-blender/PairRM")
        ranking = ranker.rank("Say hi", ["hi!", "go away", "hello, how can I help?"])
        ranking.order  # best first
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blender_core.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # ranking
    "Ranking": "blender_core.ranking",
    "Ranker": "blender_core.ranking",
    "BaseRanker": "blender_core.ranking",
    "PairRanker": "blender_core.pair_ranker",
    "PairRankerConfig": "blender_core.modeling",
    "PairRankerModel": "blender_core.modeling",
    "CheckpointError": "blender_core.modeling",
    "PairEncoder": "blender_core.encoding",
    "ConsensusRanker": "blender_core.rankers.consensus",
    "LLMJudgeRanker": "blender_core.rankers.llm_judge",
    "RandomRanker": "blender_core.rankers.random",
    "LongestRanker": "blender_core.rankers.baselines",
    "MLMScoringRanker": "blender_core.rankers.mlm_scoring",
    "SimCLSRanker": "blender_core.rankers.simcls",
    # fusion
    "Fuser": "blender_core.fusion.base",
    "BaseFuser": "blender_core.fusion.base",
    "GenFuser": "blender_core.fusion.gen_fuser",
    "LLMFuser": "blender_core.fusion.llm_fuser",
    "SelectFuser": "blender_core.fusion.select",
    # generators
    "Generator": "blender_core.generators.base",
    "BaseGenerator": "blender_core.generators.base",
    "CallableGenerator": "blender_core.generators.callable",
    "HuggingFaceGenerator": "blender_core.generators.huggingface",
    "OpenAICompatibleGenerator": "blender_core.generators.openai_compatible",
    "GeneratorError": "blender_core.generators.errors",
    "GeneratorTimeoutError": "blender_core.generators.errors",
    "ChatMessageResult": "blender_core.generators.openai_compatible",
    # pipeline
    "Blender": "blender_core.blend",
    "BlendResult": "blender_core.blend",
    "BlendError": "blender_core.blend",
    "BlendStreamEvent": "blender_core.blend",
    "ModelFailure": "blender_core.blend",
    # policies: which members a blend calls, and the report of the calls
    "CascadePolicy": "blender_core.policies",
    "RouterPolicy": "blender_core.policies",
    "MemberCost": "blender_core.policies",
    "CallReport": "blender_core.staging",
    # loading from a spec (a hub id, a path, a name or an object)
    "load_ranker": "blender_core.loading",
    "load_fuser": "blender_core.loading",
    # data
    "MixRecord": "blender_core.data",
    "MixCandidate": "blender_core.data",
    "read_mixinstruct": "blender_core.data",
    "write_mixinstruct": "blender_core.data",
}

__all__ = [
    "BaseFuser",
    "BaseGenerator",
    "BaseRanker",
    "BlendError",
    "BlendResult",
    "BlendStreamEvent",
    "Blender",
    "CallReport",
    "CallableGenerator",
    "CascadePolicy",
    "ChatMessageResult",
    "CheckpointError",
    "ConsensusRanker",
    "Fuser",
    "GenFuser",
    "Generator",
    "GeneratorError",
    "GeneratorTimeoutError",
    "HuggingFaceGenerator",
    "LLMFuser",
    "LLMJudgeRanker",
    "LongestRanker",
    "MLMScoringRanker",
    "MemberCost",
    "MixCandidate",
    "MixRecord",
    "ModelFailure",
    "OpenAICompatibleGenerator",
    "PairEncoder",
    "PairRanker",
    "PairRankerConfig",
    "PairRankerModel",
    "RandomRanker",
    "Ranker",
    "Ranking",
    "RouterPolicy",
    "SelectFuser",
    "SimCLSRanker",
    "__version__",
    "load_fuser",
    "load_ranker",
    "read_mixinstruct",
    "write_mixinstruct",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from blender_core.blend import (
        Blender,
        BlendError,
        BlendResult,
        BlendStreamEvent,
        ModelFailure,
    )
    from blender_core.data import MixCandidate, MixRecord, read_mixinstruct, write_mixinstruct
    from blender_core.encoding import PairEncoder
    from blender_core.fusion.base import BaseFuser, Fuser
    from blender_core.fusion.gen_fuser import GenFuser
    from blender_core.fusion.llm_fuser import LLMFuser
    from blender_core.fusion.select import SelectFuser
    from blender_core.generators.base import BaseGenerator, Generator
    from blender_core.generators.callable import CallableGenerator
    from blender_core.generators.errors import GeneratorError, GeneratorTimeoutError
    from blender_core.generators.huggingface import HuggingFaceGenerator
    from blender_core.generators.openai_compatible import (
        ChatMessageResult,
        OpenAICompatibleGenerator,
    )
    from blender_core.loading import load_fuser, load_ranker
    from blender_core.modeling import CheckpointError, PairRankerConfig, PairRankerModel
    from blender_core.pair_ranker import PairRanker
    from blender_core.policies import CascadePolicy, MemberCost, RouterPolicy
    from blender_core.rankers.baselines import LongestRanker
    from blender_core.rankers.consensus import ConsensusRanker
    from blender_core.rankers.llm_judge import LLMJudgeRanker
    from blender_core.rankers.mlm_scoring import MLMScoringRanker
    from blender_core.rankers.random import RandomRanker
    from blender_core.rankers.simcls import SimCLSRanker
    from blender_core.ranking import BaseRanker, Ranker, Ranking
    from blender_core.staging import CallReport
