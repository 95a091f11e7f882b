"""Keys stay home: which key goes where, Secret, redaction in messages, repr, pickle, metadata."""

from __future__ import annotations

import asyncio
import copy
import pickle
import warnings

import pytest
from hardening_server import MisbehavingServer

from blender_core import OpenAICompatibleGenerator
from blender_core.generators.errors import GeneratorError
from blender_core.secrets import (
    REDACTED,
    InsecureTransportWarning,
    Secret,
    is_loopback_host,
    redact,
)

KEY = "sk-live-TOPSECRET-0123456789abcdef"
PASSWORD = "hunter2-url-password"


@pytest.fixture(autouse=True)
def _no_env_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def test_redact_patterns() -> None:
    assert redact(f"x {KEY} y", [KEY]) == f"x {REDACTED} y"
    assert redact("https://bob:pw@example.com/v1") == "https://***@example.com/v1"
    echoed = "got {'Authorization': 'Bearer abcdefgh'}"
    assert redact(echoed) == "got {'Authorization': 'Bearer ***'}"
    assert redact('{"authorization": "Basic Ym9iOnB3"}') == '{"authorization": "Basic ***"}'
    assert redact("api-key: 1234567890") == "api-key: ***"
    assert redact("X-Api-Key=abc123&x=1") == "X-Api-Key=***&x=1"
    assert redact("GET /v1?key=abcdef&b=2") == "GET /v1?key=***&b=2"
    assert redact("token sk-proj-abcdefghijklmnopqrst!") == "token ***!"
    assert redact("bearer abcdefghij is bad") == "bearer *** is bad"
    clean = "HTTP 500: model exploded; Authorization header missing"
    assert redact(clean) == clean
    assert redact(redact(f"Authorization: Bearer {KEY}")) == "Authorization: Bearer ***"
    assert redact("a short key", ["key"]) == "a short key"  # under 4 characters: not searched
    assert redact("x%2Fy/z", ["x/y/z"]) == "x%2Fy/z"
    assert redact("k=ab%2Fcd", ["ab/cd"]) == f"k={REDACTED}"  # URL-encoded form too


def test_secret_never_shows() -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret) and KEY not in f"{secret}"
    assert secret.get_secret_value() == KEY
    with pytest.raises(TypeError):
        vars(secret)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(secret)
    with pytest.raises(AttributeError):
        secret.x = 1  # type: ignore[attr-defined]
    assert copy.deepcopy(secret) is secret
    assert secret == Secret(KEY) and secret != Secret("other") and bool(Secret("")) is False
    with pytest.raises(TypeError):
        Secret(3)  # type: ignore[arg-type]


def test_loopback_hosts() -> None:
    for host in ("localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]", "api.localhost"):
        assert is_loopback_host(host), host
    for host in ("example.com", "10.0.0.1", "192.168.1.1", "localhost.example.com", ""):
        assert not is_loopback_host(host), host


def test_environment_key_only_for_the_openai_host(
    fresh: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    official = OpenAICompatibleGenerator("gpt-4o-mini")
    assert official.api_key is not None and official.api_key.get_secret_value() == KEY
    # Another server does not get the environment's key...
    local = OpenAICompatibleGenerator("tiny", base_url=fresh.url("ok"))
    assert local.api_key is None
    assert local.generate("hi") == "echo: hi"
    assert "Authorization" not in fresh.requests[-1]["headers"]
    assert KEY not in fresh.everything_seen()
    monkeypatch.setenv("OPENAI_BASE_URL", fresh.url("ok"))  # also when the URL comes from env
    assert OpenAICompatibleGenerator("tiny").api_key is None
    monkeypatch.delenv("OPENAI_BASE_URL")
    # ... unless asked: an environment variable named explicitly, or the key itself.
    monkeypatch.setenv("MY_SERVER_KEY", "server-key-123")
    opted = OpenAICompatibleGenerator("tiny", base_url=fresh.url("ok"), api_key_env="MY_SERVER_KEY")
    assert opted.generate("hi") == "echo: hi"
    assert fresh.requests[-1]["headers"]["Authorization"] == "Bearer server-key-123"
    opted_default = OpenAICompatibleGenerator(
        "tiny", base_url=fresh.url("ok"), api_key_env="OPENAI_API_KEY"
    )
    assert opted_default.generate("hi") == "echo: hi"
    assert fresh.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    with pytest.raises(ValueError, match=r"NOT_SET_ANYWHERE.*not set"):
        OpenAICompatibleGenerator("tiny", base_url=fresh.url("ok"), api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(ValueError, match="api_key_env"):
        OpenAICompatibleGenerator("tiny", api_key_env="")
    # http://api.openai.com is not the default host (the key would go in clear text).
    assert OpenAICompatibleGenerator("m", base_url="http://api.openai.com/v1").api_key is None


def test_secret_inputs_are_accepted(fresh: MisbehavingServer) -> None:
    pydantic = pytest.importorskip("pydantic")
    for key in (Secret("given-key-1"), pydantic.SecretStr("given-key-1")):
        gen = OpenAICompatibleGenerator("tiny", base_url=fresh.url("ok"), api_key=key)
        assert gen.generate("hi") == "echo: hi"
        assert fresh.requests[-1]["headers"]["Authorization"] == "Bearer given-key-1"
    with pytest.raises(TypeError, match="secret string"):
        OpenAICompatibleGenerator("tiny", api_key=123)


def test_key_not_in_repr_vars_or_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = OpenAICompatibleGenerator("tiny", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    from_env = OpenAICompatibleGenerator("gpt-4o-mini")
    for gen in (explicit, from_env):
        assert KEY not in repr(gen)
        assert KEY not in str(vars(gen))
        assert KEY.encode() not in pickle.dumps(gen)
        assert copy.deepcopy(gen).api_key == gen.api_key  # copies keep the key
        assert copy.copy(gen).api_key == gen.api_key
    # An environment key is read again where the generator is unpickled...
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-other-process-key-000")
    revived = pickle.loads(pickle.dumps(from_env))
    assert revived.api_key is not None
    assert revived.api_key.get_secret_value() == "sk-the-other-process-key-000"
    # ... an explicit one is not: the call says so instead of going out without a key.
    lost = pickle.loads(pickle.dumps(explicit))
    assert lost.api_key is None
    with pytest.raises(GeneratorError, match=r"unpickled.*api_key_env"):
        lost.generate("x")


def test_url_credentials_become_basic_auth_and_never_show(fresh: MisbehavingServer) -> None:
    url = fresh.url("echo401").replace("http://", f"http://bob:{PASSWORD}@")
    gen = OpenAICompatibleGenerator("tiny", base_url=url, timeout=10)
    assert gen.base_url == fresh.url("echo401")
    assert PASSWORD not in repr(gen) and PASSWORD not in str(vars(gen))
    assert PASSWORD.encode() not in pickle.dumps(gen)
    with pytest.raises(GeneratorError, match="HTTP 401") as info:
        gen.generate("x")
    sent = fresh.requests[-1]["headers"]["Authorization"]
    assert sent.startswith("Basic ")  # the server saw the credentials...
    message = str(info.value) + str(info.value.body)
    assert PASSWORD not in message and sent.split()[1] not in message  # ...the message does not
    assert "Basic ***" in message
    with pytest.raises(ValueError, match=r"valid URL: 'http://\*\*\*@127.0.0.1:bad/v1'"):
        OpenAICompatibleGenerator("tiny", base_url=f"http://bob:{PASSWORD}@127.0.0.1:bad/v1")
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAICompatibleGenerator("tiny", base_url="ftp://example.com/v1")


async def test_echoed_key_is_redacted_everywhere(fresh: MisbehavingServer) -> None:
    from blender_core import Blender
    from blender_core.generators.callable import CallableGenerator

    gen = OpenAICompatibleGenerator("leaky", base_url=fresh.url("echo401"), api_key=KEY)
    for call in (lambda: gen.generate("x"), lambda: asyncio.run(gen.agenerate("x"))):
        with pytest.raises(GeneratorError, match="HTTP 401") as info:
            await asyncio.to_thread(call)
        assert fresh.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
        assert KEY not in str(info.value) and KEY not in (info.value.body or "")
        assert KEY not in repr(info.value) and "Bearer ***" in str(info.value)

    ok = CallableGenerator(lambda prompt, **_: "a fine answer", name="fine")
    blender = Blender([gen, ok], ranker="random", fuser=None, min_candidates=1)
    result = await blender.ablend("q")
    (failure,) = result.failures
    assert failure.model == "leaky" and "HTTP 401" in failure.message
    assert KEY not in str(result.to_dict()) and KEY not in str(failure)

    # A failure built by anyone (another adapter, a user's callable) is redacted too.
    def raises(prompt: object, **_: object) -> str:
        raise RuntimeError(f"upstream said: Authorization: Bearer {KEY}")

    result = await Blender(
        [CallableGenerator(raises, name="raw"), ok], ranker="random", fuser=None, min_candidates=1
    ).ablend("q")
    assert KEY not in str(result.to_dict()) and "Bearer ***" in result.failures[0].message


def test_warning_for_keys_over_plain_http() -> None:
    with pytest.warns(InsecureTransportWarning, match="unencrypted.*example.com"):
        OpenAICompatibleGenerator("m", base_url="http://example.com/v1", api_key=KEY)
    with pytest.warns(InsecureTransportWarning, match="10.1.2.3"):
        OpenAICompatibleGenerator("m", base_url=f"http://bob:{PASSWORD}@10.1.2.3/v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OpenAICompatibleGenerator("m", base_url="https://example.com/v1", api_key=KEY)
        OpenAICompatibleGenerator("m", base_url="http://127.0.0.1:8000/v1", api_key=KEY)
        OpenAICompatibleGenerator("m", base_url="http://localhost:8000/v1", api_key=KEY)
        OpenAICompatibleGenerator("m", base_url="http://example.com/v1")  # no key: nothing to leak
