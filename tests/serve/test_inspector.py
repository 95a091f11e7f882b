"""The blend inspector (``GET /`` and ``POST /v1/blend/stream``): its event stream over HTTP,
and the page itself in a real headless Chromium (Debian's ``chromium``, driven by Playwright;
no browser download). Skipped only where no Chromium is installed (CI installs it)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import FakeUpstream, Server, running
from toml_tables import ensemble, openai_member, static_member

KEY = "inspector-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
MEMBERS = ["expert", "coach", "teacher", "flaky"]


def _config(upstream: FakeUpstream) -> str:
    slow = {"word_delay": 0.02}
    return (
        static_member("expert", "Paris is the capital of France, on the Seine.", **slow)
        + static_member(
            "coach", "1. Remember: Paris. 2. Say it aloud. 3. Picture the Eiffel Tower.", **slow
        )
        + static_member(
            "teacher",
            "The capital of France is Paris; for example, the government sits there.",
            **slow,
        )
        + openai_member("flaky", upstream.base_url("error"))
        + static_member("writer", "Paris is the capital of France.", **slow)
        + ensemble("inspect", MEMBERS, fuser={"type": "llm", "member": "writer"}, top_k=2)
    )


@pytest.fixture(scope="module")
def server(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ("--api-key-env", "INSPECTOR_KEY")
    with running(
        _config(upstream),
        tmp_path_factory.mktemp("inspector"),
        args=args,
        env={"INSPECTOR_KEY": KEY},
    ) as srv:
        yield srv


def _events(server: Server) -> list[dict[str, object]]:
    body = {"model": "inspect", "messages": [{"role": "user", "content": "Capital of France?"}]}
    events = []
    with httpx.stream(
        "POST", f"{server.base_url}/blend/stream", json=body, headers=AUTH, timeout=30
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
    return events


def test_event_stream_has_every_member_the_ranking_and_the_fused_answer(server: Server) -> None:
    events = _events(server)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "result"
    deltas: dict[str, str] = {}
    for event in events:
        if event["type"] == "member_delta":
            deltas[str(event["member"])] = deltas.get(str(event["member"]), "") + str(event["text"])
    assert deltas["expert"] == "Paris is the capital of France, on the Seine."
    assert sum(1 for e in events if e["type"] == "member_delta" and e["member"] == "coach") > 3
    done = {e["member"]: e for e in events if e["type"] == "member_done"}
    assert set(done) == {"expert", "coach", "teacher"}
    errors = [e for e in events if e["type"] == "member_error"]
    assert [e["member"] for e in errors] == ["flaky"]
    assert "HTTP 500" in str(errors[0]["message"])
    assert "127.0.0.1" not in json.dumps(events)
    fused = "".join(str(e["text"]) for e in events if e["type"] == "fused_delta")
    result = events[-1]
    assert fused == result["text"] == "Paris is the capital of France."
    matrix = result["preferences"]["matrix"]  # type: ignore[index]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert result["preferences"]["source"] == "scores"  # type: ignore[index]
    for i in range(3):
        assert matrix[i][i] is None
        for j in range(3):
            if i != j:
                assert abs(matrix[i][j] + matrix[j][i] - 1) < 1e-3


def test_page_and_stream_need_the_key(server: Server) -> None:
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 401
    assert page.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{server.url}/", headers=AUTH, timeout=10).status_code == 200
    basic = httpx.get(f"{server.url}/", auth=("anyone", KEY), timeout=10)
    assert basic.status_code == 200 and "Blend inspector" in basic.text
    assert httpx.get(f"{server.url}/", auth=("anyone", "wrong"), timeout=10).status_code == 401
    stream = httpx.post(f"{server.base_url}/blend/stream", json={}, timeout=10)
    assert stream.status_code == 401


def test_page_is_self_contained(server: Server) -> None:
    html = httpx.get(f"{server.url}/", headers=AUTH, timeout=10).text
    for external in ("http://", "https://", "//cdn", "<link", "src="):
        assert external not in html


def _chromium() -> str | None:
    return (
        os.environ.get("BLENDER_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def test_inspector_page_in_a_headless_browser(server: Server, tmp_path: Path) -> None:
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(
                http_credentials={"username": "inspector", "password": KEY},
                viewport={"width": 1280, "height": 1100},
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{server.url}/")
            page.wait_for_selector("#ensemble option[value='inspect']", state="attached")
            page.fill("#prompt", "What is the capital of France?")
            page.click("#run")
            # (the page's CSP forbids eval, so no wait_for_function: a locator waits)
            page.locator("#status", has_text="Done.").wait_for()
            panes = page.locator(".pane")
            assert panes.count() == len(MEMBERS)
            for name in ("expert", "coach", "teacher"):
                pane = page.locator(f".pane[data-member='{name}']")
                assert "done" in (pane.get_attribute("class") or "")
                assert pane.locator(".text").inner_text().strip()
                assert " s, " in pane.locator(".meta").inner_text()
            failed = page.locator(".pane[data-member='flaky']")
            assert "failed" in (failed.get_attribute("class") or "")
            assert "HTTP 500" in failed.locator(".error").inner_text()
            assert "flaky (error)" in page.locator("#failures").inner_text()
            assert page.locator(".heat-cell").count() == 3 * 3
            assert page.locator(".heat-cell.diag").count() == 3
            assert page.locator("#ranking tbody tr").count() == 3
            fused = page.locator("#fused .text").inner_text()
            assert fused == "Paris is the capital of France."
            shot = os.environ.get("BLENDER_INSPECTOR_SCREENSHOT")
            page.screenshot(path=shot or str(tmp_path / "inspector.png"), full_page=True)
        finally:
            browser.close()
