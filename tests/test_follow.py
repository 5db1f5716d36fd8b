"""`renderloop follow`: the person watches the worker's commits arrive and gets the review."""
from __future__ import annotations

import subprocess
import sys
import time

from tests.helpers import BATCH_YAML, Sandbox, cli, git


def push_batch(sandbox: Sandbox) -> None:
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    git(sandbox.mac, "push", "-q")


def test_follow_pulls_progress_and_writes_the_review_when_complete(sandbox: Sandbox, tmp_path) -> None:
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shown = tmp_path / "shown.txt"
    fake = bin_dir / "notify-send"  # the real program's place on PATH; records what it was asked to show
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen({str(shown)!r}, 'a').write(repr(sys.argv[1:]) + '\\n')\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    push_batch(sandbox)
    follower = subprocess.Popen(
        [sys.executable, "-m", "renderloop", "follow", "--poll", "0.2", "--timeout", "90"],
        cwd=sandbox.mac, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        time.sleep(1.0)
        worker = cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder",
                     "--placeholder-seconds", "0.4", "--window", "1", "--once")
        assert worker.returncode == 0, worker.stderr
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert "Following hero" in out
    assert "hero: 3/3 rendered, 0 failed, 0 pending" in out
    assert "3 rendered, 0 failed, 0 waiting -> renders/hero/review.md" in out
    # it ends with the review's path and a desktop notification
    assert out.splitlines()[-1] == "Review: renders/hero/review.md"
    if sys.platform.startswith("linux"):
        assert shown.read_text().splitlines() == [repr([
            "--app-name=renderloop", "renderloop: hero rendered",
            "hero: 3 rendered, 0 failed, 0 waiting -> renders/hero/review.md"])]
    # the person's clone has the worker's commits and the staged review
    assert git(sandbox.mac, "rev-parse", "HEAD").stdout == git(sandbox.remote, "rev-parse", "main").stdout
    assert (sandbox.mac / "renders/hero/review.md").is_file()
    staged = git(sandbox.mac, "diff", "--cached", "--name-only").stdout.split()
    assert "renders/hero/review.md" in staged


def test_follow_with_nothing_pending_returns_at_once(sandbox: Sandbox) -> None:
    result = cli("follow", "--poll", "0.1", cwd=sandbox.mac, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Nothing to wait for" in result.stdout


def test_follow_gives_up_after_its_timeout(sandbox: Sandbox) -> None:
    push_batch(sandbox)
    started = time.monotonic()
    result = cli("follow", "--poll", "0.1", "--timeout", "1", cwd=sandbox.mac, timeout=30)
    assert result.returncode == 1
    assert "gave up after 1 s: 3 image(s) still pending in hero" in result.stderr
    assert time.monotonic() - started < 15


def test_follow_says_a_batch_committed_here_is_not_pushed(sandbox: Sandbox) -> None:
    """A push the worker's commits rejected, or one forgotten: the worker never sees the batch; say so, once."""
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "batches/hero.yaml")
    git(sandbox.mac, "commit", "-q", "-m", "batch hero")
    result = cli("follow", "--poll", "0.1", "--timeout", "1", cwd=sandbox.mac, timeout=30)
    assert result.returncode == 1
    assert result.stderr.count("batches/hero.yaml is committed here but not on origin/main: `git push` it, "
                               "or the worker never renders it") == 1, result.stderr
    git(sandbox.mac, "push", "-q")
    pushed = cli("follow", "--poll", "0.1", "--timeout", "1", cwd=sandbox.mac, timeout=30)
    assert "not on origin" not in pushed.stderr


def test_the_desktop_notifier_per_platform() -> None:
    from mac_side.desktop import notification_argv

    found = {"osascript": "/usr/bin/osascript", "notify-send": "/usr/bin/notify-send"}.get
    mac = notification_argv('hero "done"', "3 rendered \\ ok", "darwin", found)
    assert mac == ["/usr/bin/osascript", "-e",
                   'display notification "3 rendered \\\\ ok" with title "hero \\"done\\""']
    assert notification_argv("t", "b", "linux", found) == ["/usr/bin/notify-send", "--app-name=renderloop", "t", "b"]
    assert notification_argv("t", "b", "linux", lambda name: None) is None  # not installed: nothing, no error
    assert notification_argv("t", "b", "win32", found) is None


def test_follow_with_an_injected_notifier(sandbox: Sandbox) -> None:
    import threading

    from renderloop.commands.follow import follow

    push_batch(sandbox)
    told: list[tuple[str, str]] = []
    worker = threading.Timer(0.5, lambda: cli("worker", "--repo", str(sandbox.worker), "--backend", "placeholder",
                                              "--once"))
    worker.start()
    try:
        assert follow(sandbox.mac, poll=0.2, timeout=60, notify=lambda t, b: told.append((t, b)) or True) == 0
    finally:
        worker.join()
    assert told == [("renderloop: hero rendered", "hero: 3 rendered, 0 failed, 0 waiting -> renders/hero/review.md")]
