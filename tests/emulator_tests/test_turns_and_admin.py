"""``--turns FILE`` (scripted turns, reloaded on change) and the loopback admin API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
import logging
import os
from pathlib import Path
import re
import sys
from typing import Any
from unittest import mock

import aiohttp
from aiohttp.test_utils import make_mocked_request
import pytest

from custom_components.itannix.realtime import AuthenticationError
from tests.conftest import WORKSPACE_KEY
from tests.emulator import Emulator, ScriptedBrain
from tests.emulator.turns_file import (
    TurnsFileError,
    TurnsFileWatcher,
    load_turns,
    parse_turns,
)

from .wire import CLIENT_ID, connected, deltas, make_client, text_response, user_text

REPO_ROOT = Path(__file__).resolve().parents[2]
NEW_SECRET = "f00d" * 12


@pytest.fixture(autouse=True)
async def _shutdown_executor() -> AsyncIterator[None]:
    yield
    await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def write(path: Path, data: Any) -> None:
    """Replace the file's content (and so its mtime), as an editor saving it does."""
    text = data if isinstance(data, str) else json.dumps(data)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- Parsing ---------------------------------------------------------------------------


def test_parse_turns_reads_every_field() -> None:
    turns = parse_turns(
        [
            {
                "transcript": "turn on the kitchen light",
                "reply": "Sure.",
                "function_calls": [
                    {"name": "light_on", "arguments": {"room": "kitchen"}},
                    {"name": "scene", "arguments": '{"id": 3}', "call_id": "call_s"},
                ],
                "reply_after_tools": "Done: {light_on}.",
            },
            {
                "user_text": "what time is it",
                "reply": "Noon.",
                "status": "incomplete",
                "transcription_error": "Audio was unintelligible.",
            },
            {},
        ]
    )
    first, second, third = turns
    assert (first.user_text, first.transcript, first.reply) == (
        None,
        "turn on the kitchen light",
        "Sure.",
    )
    assert [
        (c.name, json.loads(c.arguments), c.call_id) for c in first.function_calls
    ] == [
        ("light_on", {"room": "kitchen"}, None),
        ("scene", {"id": 3}, "call_s"),
    ]
    assert first.function_calls[1].arguments == '{"id": 3}'  # a string stays as is
    assert first.reply_after_tools == "Done: {light_on}."
    assert first.status == "completed"
    assert (second.user_text, second.status, second.transcription_error) == (
        "what time is it",
        "incomplete",
        "Audio was unintelligible.",
    )
    assert (third.reply, third.function_calls, third.status) == ("", [], "completed")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reply": "x"}, "a JSON list of turns"),
        ([{"reply": "ok"}, {"replay": "typo"}], "turn 2: unknown key(s) replay"),
        ([{"status": "done"}], "turn 1: 'status' must be one of"),
        ([{"reply": 3}], "turn 1: 'reply' must be a string"),
        (
            [{"function_calls": [{"name": "x", "arguments": 5}]}],
            "turn 1, function call 1: 'arguments' must be an object or a string",
        ),
        ([{"function_calls": [{"arguments": "{}"}]}], "'name' must be a non-empty"),
        ([{"function_calls": {"name": "x"}}], "'function_calls' must be a list"),
    ],
)
def test_parse_turns_says_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(TurnsFileError, match=re.escape(message)):
        parse_turns(data)


def test_load_turns_rejects_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "turns.json"
    write(path, "[{not json")
    with pytest.raises(TurnsFileError, match="not valid JSON"):
        load_turns(path)
    with pytest.raises(TurnsFileError, match="cannot read it"):
        load_turns(tmp_path / "missing.json")


# -- Reloading ---------------------------------------------------------------------------


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def test_watcher_replaces_pending_turns_and_keeps_them_on_a_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "turns.json"
    write(
        path,
        [
            {"user_text": "one", "reply": "First."},
            {"reply": "Any.", "function_calls": [{"name": "light_on"}]},
        ],
    )
    brain = ScriptedBrain("default")
    watcher = TurnsFileWatcher(path, brain, interval=0.05)
    watcher.start()
    try:
        assert brain.pending_turns == 2
        assert [t["name"] for t in brain.tools] == ["light_on"]
        assert brain.next_text_turn("one").reply == "First."
        assert brain.pending_turns == 1

        # A new version replaces what is pending (not appended to it).
        write(path, [{"reply": "New A."}, {"reply": "New B."}, {"reply": "New C."}])
        await wait_for(lambda: watcher.loads == 2)
        assert brain.pending_turns == 3
        assert brain.tools == []  # the tools are the new file's

        # A broken version: one clear line, and the old turns stay.
        caplog.set_level(logging.ERROR, logger="tests.emulator.turns_file")
        write(path, '[{"reply": "half')
        await wait_for(lambda: watcher.errors == 1)
        assert brain.pending_turns == 3
        [record] = [r for r in caplog.records if "not loaded" in r.getMessage()]
        assert str(path) in record.getMessage()
        assert "not valid JSON" in record.getMessage()
        assert "keeping the 3 scripted turn(s) pending" in record.getMessage()
        assert record.exc_info is None
        # Unchanged since: not read (or logged) again.
        await asyncio.sleep(0.2)
        assert watcher.errors == 1

        write(path, [{"reply": "Fixed."}])
        await wait_for(lambda: watcher.loads == 3)
        assert brain.next_audio_turn().reply == "Fixed."
        assert brain.pending_turns == 0
    finally:
        await watcher.stop()


@contextlib.asynccontextmanager
async def standalone(*args: str) -> AsyncIterator[tuple[str, list[str]]]:
    """Run ``python -m tests.emulator``; yield its URL and its (growing) stderr lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workspace-key",
        WORKSPACE_KEY,
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []

    async def read_stderr() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode(errors="replace"))

    reader = asyncio.get_running_loop().create_task(read_stderr())
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"ItanniX emulator listening on (http://\S+)\n", line)
        assert match, line
        yield match[1], lines
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await reader


async def ask(http: aiohttp.ClientSession, url: str, text: str) -> list[dict[str, Any]]:
    """One typed turn on a fresh connection; the events from the request to done."""
    async with connected(make_client(http, url), modalities=("text",)) as w:
        await w.until("session.created")
        await w.send(user_text(text))
        mark = await w.send(text_response())
        done = await w.until("response.done", since=mark)
        if w.events[done]["response"]["output"][-1]["type"] == "function_call":
            call = w.events[done]["response"]["output"][-1]
            await w.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": "on",
                    },
                }
            )
            await w.send(text_response())
            done = await w.until("response.done", since=done + 1)
        return w.events[mark : done + 1]


async def test_standalone_turns_file_is_used_and_reloaded(
    socket_enabled: None, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    path = tmp_path / "turns.json"
    write(
        path,
        [
            {
                "user_text": "light please",
                "reply": "Sure.",
                "function_calls": [
                    {
                        "name": "light_on",
                        "arguments": {"room": "kitchen"},
                        "call_id": "call_file",
                    }
                ],
                "reply_after_tools": "The light is {light_on}.",
            },
            {"user_text": "what time is it", "reply": "Noon."},
        ],
    )
    async with standalone("--turns", str(path)) as (url, stderr):
        events = await ask(http, url, "light please")
        dones = [e for e in events if e["type"] == "response.done"]
        call = dones[0]["response"]["output"][-1]
        # The file's function is a dashboard tool: the call is made.
        assert (call["name"], call["call_id"]) == ("light_on", "call_file")
        assert json.loads(call["arguments"]) == {"room": "kitchen"}
        assert deltas(events).endswith("The light is on.")

        write(path, [{"user_text": "what time is it", "reply": "Midnight."}])
        await wait_for(lambda: sum("Loaded 1 turn" in line for line in stderr) == 1)
        assert deltas(await ask(http, url, "what time is it")) == "Midnight."

        write(path, [{"user_text": "what time is it", "reply": "Dawn."}])
        await wait_for(lambda: sum("Loaded 1 turn" in line for line in stderr) == 2)
        write(path, "this is not json")
        await wait_for(lambda: any("not loaded" in line for line in stderr))
        # The old turns stay.
        assert deltas(await ask(http, url, "what time is it")) == "Dawn."
        # Consumed: nothing scripted is left.
        events = await ask(http, url, "what time is it")
        assert deltas(events) == "I heard: what time is it"
    assert "Traceback" not in "".join(stderr)


# -- Admin: reset enrollment ---------------------------------------------------------------


async def test_admin_reset_lets_a_new_secret_enroll(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    old = make_client(http, emulator.url)
    new = make_client(http, emulator.url, NEW_SECRET)
    await old.create_session()
    with pytest.raises(AuthenticationError):
        await new.create_session()

    reset = f"{emulator.url}/_admin/enrollments/{CLIENT_ID}/reset"
    async with http.post(reset) as resp:
        assert resp.status == 204
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert not emulator.is_enrolled(CLIENT_ID)
    await new.create_session()  # reauth: the new secret enrolls
    with pytest.raises(AuthenticationError):
        await old.create_session()
    # Idempotent, and for an unknown client too.
    async with http.post(reset) as resp:
        assert resp.status == 204
    assert not emulator.is_enrolled(CLIENT_ID)
    async with http.post(f"{emulator.url}/_admin/enrollments/nobody/reset") as resp:
        assert resp.status == 204


async def test_admin_refuses_browser_pages(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    await make_client(http, emulator.url).create_session()
    reset = f"{emulator.url}/_admin/enrollments/{CLIENT_ID}/reset"
    async with http.post(reset, headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.options(
        reset,
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    ) as resp:
        assert resp.status != 204
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert emulator.is_enrolled(CLIENT_ID)


def peer_request(peer: tuple[str, int] | None, **headers: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        peer if name == "peername" else default
    )
    return make_mocked_request(
        "POST",
        f"/_admin/enrollments/{CLIENT_ID}/reset",
        headers=headers,
        match_info={"client_id": CLIENT_ID},
        transport=transport,
    )


@pytest.mark.parametrize(
    ("peer", "headers", "status"),
    [
        (("203.0.113.7", 40000), {}, 403),
        (("192.168.1.20", 40000), {"X-Forwarded-For": "127.0.0.1"}, 403),
        (("2001:db8::1", 40000), {}, 403),
        (("::ffff:198.51.100.1", 40000), {}, 403),
        (None, {}, 403),
        (("127.0.0.1", 40000), {}, 204),
        (("127.0.0.5", 40000), {}, 204),
        (("::1", 40000), {}, 204),
        (("::ffff:127.0.0.1", 40000), {}, 204),
    ],
)
async def test_admin_answers_loopback_peers_only(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    peer: tuple[str, int] | None,
    headers: dict[str, str],
    status: int,
) -> None:
    await make_client(http, emulator.url).create_session()
    response = await emulator._admin_reset_enrollment(peer_request(peer, **headers))
    assert response.status == status
    assert emulator.is_enrolled(CLIENT_ID) == (status == 403)
