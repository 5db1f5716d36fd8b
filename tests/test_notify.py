"""The worker's notifications: a JSON POST when a batch ends, received for real on 127.0.0.1."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from tests.helpers import BATCH_YAML, Sandbox, cli, git
from win_side.notify import BatchEnded, Notifier

SECRET_PATH = "/api/webhooks/1234/s3cr3t-token"


class Receiver:
    """A webhook on 127.0.0.1: records each POST; answers ``statuses`` in turn (then 200), after ``delay``."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                with receiver.got:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    receiver.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, dict[str, str], bytes]]:
        with self.got:
            self.got.wait_for(lambda: len(self.posts) >= count, timeout)
        return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_the_worker_posts_batch_done_when_a_batch_ends(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once",
                 "--name", "studio-pc", "--notify", receiver.url)
    assert result.returncode == 0, result.stderr
    posts = receiver.wait_for(1)
    assert len(posts) == 1
    path, headers, body = posts[0]
    assert path == SECRET_PATH and headers["Content-Type"] == "application/json"
    message = "hero: all 3 rendered (3 done) on studio-pc"
    assert json.loads(body) == {"event": "batch-done", "batch": "hero", "done": 3, "failed": 0, "total": 3,
                                "worker": "studio-pc", "message": message, "text": message, "content": message}
    assert "notify: told http://127.0.0.1:" in result.stderr
    assert "s3cr3t" not in result.stderr  # a webhook's path is its secret: never logged
    # a second run with nothing to render tells nobody
    again = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once",
                "--notify", receiver.url)
    assert again.returncode == 0
    time.sleep(0.5)
    assert len(receiver.posts) == 1


def test_a_failing_webhook_is_retried_on_the_backoff_without_holding_anyone_up(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    receiver.delay = 0.3
    notifier = Notifier(receiver.url, "json", delays=(0.2, 0.4)).start()
    try:
        started = time.monotonic()
        notifier.tell(BatchEnded("hero", 2, 1, 3, "studio-pc"))
        assert time.monotonic() - started < 0.05  # telling never waits for the webhook
        posts = receiver.wait_for(3)
        assert len(posts) == 3
        assert all(json.loads(body)["event"] == "batch-failed" for _, _, body in posts)
        assert json.loads(posts[-1][2])["message"] == "hero: 1 of 3 failed (2 done) on studio-pc"
        deadline = time.monotonic() + 5
        while notifier.sent < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notifier.sent == 1 and notifier.given_up == 0
    finally:
        notifier.stop()


def test_a_dead_webhook_is_given_up_after_its_tries(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.statuses = [500] * 10
    notifier = Notifier(receiver.url, "json", delays=(0.05,), attempts=3).start()
    with caplog.at_level("WARNING", logger="renderloop.worker"):
        notifier.tell(BatchEnded("hero", 3, 0, 3, "studio-pc"))
        receiver.wait_for(3)
        notifier.stop()
    assert len(receiver.posts) == 3 and notifier.given_up == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("HTTP 500" in line and "will try again in 0.05 s" in line for line in lines)
    assert any("given up after 3 tries" in line for line in lines)
    assert not any("s3cr3t" in line for line in lines)


def test_the_queue_is_bounded_the_oldest_dropped(receiver: Receiver) -> None:
    receiver.delay = 0.5
    notifier = Notifier(receiver.url, "json", size=2).start()
    try:
        for n in range(6):
            notifier.tell(BatchEnded(f"b{n}", 1, 0, 1, "w"))
        receiver.wait_for(3)
        time.sleep(0.8)
    finally:
        notifier.stop()
    batches = [json.loads(body)["batch"] for _, _, body in receiver.posts]
    assert batches[-2:] == ["b4", "b5"] and len(batches) <= 3


@pytest.mark.parametrize("fmt, content_type, expected", [
    ("slack", "application/json", {"text": "hero: all 3 rendered (3 done) on w"}),
    ("discord", "application/json", {"content": "hero: all 3 rendered (3 done) on w"}),
    ("ntfy", "text/plain; charset=utf-8", "hero: all 3 rendered (3 done) on w"),
])
def test_the_shapes_ntfy_discord_and_slack_accept(receiver: Receiver, fmt: str, content_type: str,
                                                  expected: object) -> None:
    notifier = Notifier(receiver.url, fmt).start()  # type: ignore[arg-type]
    notifier.tell(BatchEnded("hero", 3, 0, 3, "w"))
    _, headers, body = receiver.wait_for(1)[0]
    notifier.stop()
    assert headers["Content-Type"] == content_type
    if fmt == "ntfy":
        assert body.decode() == expected and headers["Title"] == "renderloop: hero done"
    else:
        assert json.loads(body) == expected


def test_notify_flags_are_checked(sandbox: Sandbox) -> None:
    result = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder", "--once",
                 "--notify", "file:///etc/passwd")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "renderloop: error: --notify: webhook 'file:///etc/passwd' is not an http(s) URL like https://ntfy.sh/my-studio")
