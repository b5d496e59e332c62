"""Assume breach: model code that already escaped the Python layer.

Each attempt runs as plain Python (real builtins, `import os` works) in a
worker started through the test-only `UnguardedSandbox`. It runs twice: with
the OS layer off (the control: the attempt must succeed, so the test can
fail) and with it on (the attempt must fail, and nothing outside changes).
Each attempt names the layers that can stop it; when none of them is active
on this machine the test skips and says which are missing. Every outcome is
printed, attempt by attempt (`pytest -s` shows them).

Holds for root too: the worker drops to a uid of its own with CAP_DAC_READ_SEARCH,
so file modes would not stop a read, and the victim directories are made
world-writable, so file modes would not stop a write either: only the OS
layer's own mechanisms are tested.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeagent.tools import ExecResult
from edgeagent.tools.sandbox import protections
from edgeagent.tools.sandbox.breach import UnguardedSandbox

SECRET = "breach-secret-5d2e"


@dataclass
class Scene:
    home_file: Path
    victims: Path
    canary: Path
    port: int
    accepted: list[Any]
    bystander: int  # a process of the host's user that is not the sandbox's


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    home_file = Path.home() / f".edgeagent-breach-{uuid.uuid4().hex[:8]}"
    home_file.write_text(SECRET)
    victims = tmp_path_factory.mktemp("victims")
    for path in (victims.parent, victims):
        path.chmod(0o777)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[Any] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        yield Scene(home_file, victims, victims / "canary", server.getsockname()[1], accepted,
                    bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
        stop.set()
        thread.join()
        server.close()
        home_file.unlink()


@pytest.fixture(scope="module")
def confined() -> Iterator[UnguardedSandbox]:
    with UnguardedSandbox(timeout_s=10.0) as box:
        yield box


@pytest.fixture(scope="module")
def control() -> Iterator[UnguardedSandbox]:
    with UnguardedSandbox(timeout_s=10.0, os_layer=False) as box:
        yield box


@dataclass
class Attempt:
    code: str
    stoppers: tuple[str, ...]  # layers that can stop it on their own
    prepare: Callable[[Scene], None] = lambda scene: None
    harmless: Callable[[Scene], bool] = lambda scene: True  # checked after a stopped attempt


def _peer(conn: socket.socket) -> Any:
    try:
        return conn.getpeername()
    except OSError:
        return None


def _accepted_after_marker(scene: Scene) -> int:
    """Connections the local server accepted, counted after our own marker connection.

    The server accepts in order, so once the marker is accepted every earlier connection
    (the control run's, or one the confined run should not have made) is counted too: the
    count does not race the accept thread.
    """
    with socket.create_connection(("127.0.0.1", scene.port), timeout=2) as marker:
        ours = marker.getsockname()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(_peer(conn) == ours for conn in list(scene.accepted)):
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the local server never accepted the marker connection")
    return len(scene.accepted)


def _victim(scene: Scene) -> None:
    (scene.victims / "victim.txt").write_text("keep me")
    (scene.victims / "victim.txt").chmod(0o666)
    scene.canary.unlink(missing_ok=True)


def _bystander_limit(scene: Scene) -> str:
    limits = Path(f"/proc/{scene.bystander}/limits").read_text().splitlines()
    return next(line for line in limits if line.startswith("Max open files")).split()[3]  # soft


def _reset_bystander(scene: Scene) -> None:
    import resource

    hard = resource.prlimit(scene.bystander, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(scene.bystander, resource.RLIMIT_NOFILE, (64, hard))


def _bystander_untouched(scene: Scene) -> bool:
    return _bystander_limit(scene) == "64"


def _victim_kept(scene: Scene) -> bool:
    return (scene.victims / "victim.txt").read_text() == "keep me"


ATTEMPTS: dict[str, Attempt] = {
    "read_home_file": Attempt("open({home_file!r}).read()", ("landlock",)),
    "read_checkout_file": Attempt("open({readme!r}).read()", ("landlock",)),
    "write_outside_tempdir": Attempt(
        "open({canary!r}, 'w').close()", ("landlock",), _victim,
        lambda s: not s.canary.exists()),
    "unlink_outside": Attempt(
        "import os\nos.unlink({victim!r})", ("landlock",), _victim, _victim_kept),
    "rename_outside": Attempt(
        "import os\nos.rename({victim!r}, {victim!r} + '.moved')", ("landlock",), _victim,
        _victim_kept),
    "tcp_connect_local_server": Attempt(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()",
        ("seccomp", "namespaces", "landlock")),
    "subprocess_true": Attempt(
        "import subprocess\nsubprocess.run(['true'], check=True)", ("seccomp", "landlock")),
    "signal_parent": Attempt("import os\nos.kill(os.getppid(), 0)", ("seccomp", "landlock")),
    "signal_host": Attempt("import os\nos.kill({host_pid}, 0)", ("seccomp", "landlock", "uid")),
    "lower_another_process_limits": Attempt(
        "import resource\nhard = resource.prlimit({bystander}, resource.RLIMIT_NOFILE)[1]\n"
        "resource.prlimit({bystander}, resource.RLIMIT_NOFILE, (3, hard))",
        ("seccomp", "uid"), _reset_bystander, _bystander_untouched),
    "ctypes_libc_system": Attempt(
        "import ctypes\nrc = ctypes.CDLL(None).system(b'touch {canary}')\n"
        "assert rc == 0, f'system() returned {{rc}}'",
        ("seccomp", "landlock"), _victim, lambda s: not s.canary.exists()),
}


def _code(attempt: Attempt, scene: Scene) -> str:
    return attempt.code.format(
        home_file=str(scene.home_file), canary=str(scene.canary), port=scene.port,
        victim=str(scene.victims / "victim.txt"), host_pid=os.getpid(),
        readme=str(Path(__file__).resolve().parents[1] / "README.md"),
        bystander=scene.bystander,
    )


def _active_stoppers(stoppers: tuple[str, ...]) -> list[str]:
    layers = protections()["layers"]
    return [name for name in stoppers if layers.get(name, {}).get("active")]


def _say(name: str, mode: str, result: ExecResult) -> None:
    outcome = "stopped" if result.error else "SUCCEEDED"
    detail = (result.error or result.last_value_repr).splitlines()[-1][:160]
    print(f"\nattempt {name} [{mode}]: {outcome}: {detail}")


@pytest.mark.parametrize("name", list(ATTEMPTS), ids=str)
def test_attempt_succeeds_without_os_layer_and_fails_with_it(
    name: str, scene: Scene, confined: UnguardedSandbox, control: UnguardedSandbox
) -> None:
    attempt = ATTEMPTS[name]
    active = _active_stoppers(attempt.stoppers)
    if not active:
        reasons = {n: protections()["layers"].get(n, {}).get("detail", "absent")
                   for n in attempt.stoppers}
        pytest.skip(f"no layer that stops {name} is active here: {reasons}")
    code = _code(attempt, scene)

    attempt.prepare(scene)
    baseline = control.run(code)
    _say(name, "os layer off", baseline)
    assert baseline.error is None, f"control run failed, the test proves nothing: {baseline}"

    attempt.prepare(scene)
    accepted_before = _accepted_after_marker(scene)
    result = confined.run(code)
    _say(name, f"os layer on: {'+'.join(active)}", result)
    assert result.error is not None, f"{name} was not stopped: {result}"
    assert not result.restarted
    assert SECRET not in f"{result.stdout}{result.error}{result.last_value_repr}"
    assert _accepted_after_marker(scene) == accepted_before + 1  # only our own marker
    assert attempt.harmless(scene)
    assert confined.run("6 * 7").last_value_repr == "42"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


BOMB = """
import os, time
failed = None
made = 0
for _ in range(300):  # at most 600 processes if nothing stopped it
    try:
        pid = os.fork()
    except OSError as exc:
        failed = exc.errno
        break
    if pid == 0:
        try:
            os.fork()  # every child multiplies too
        except OSError:
            pass
        time.sleep(4)
        os._exit(0)
    made += 1
(failed, made)
"""


def test_fork_bomb_is_stopped_and_the_host_unharmed() -> None:
    layers = protections()["layers"]
    rlimits = layers.get("rlimits", {})
    if not rlimits.get("active") or "NPROC=" not in str(rlimits.get("detail")):
        pytest.skip(f"RLIMIT_NPROC does not bind here: {rlimits.get('detail')}")
    with UnguardedSandbox(timeout_s=10.0) as box:
        box.run("1")
        assert box.worker_pid is not None
        pgid = os.getpgid(box.worker_pid)
        result = box.run(BOMB)
        print(f"\nattempt fork_bomb [os layer on: rlimits]: (errno, forks before it) = "
              f"{result.last_value_repr} {result.error or ''}")
        assert result.error is None, result
        failed, made = result.last_value_repr.strip("()").split(", ")
        assert failed == "11", result  # EAGAIN
        crowd = len(_group_members(pgid))
        detail = str(box.protections["layers"]["rlimits"]["detail"])
        limit = int(detail.split("NPROC=")[1].split()[0])
        print(f"attempt fork_bomb: {crowd} processes in the sandbox's group ({detail})")
        assert crowd <= limit + 1  # the keeper is not the sandbox's uid
        assert int(made) < limit
        assert box.run("6 * 7").last_value_repr == "42"
    deadline = time.monotonic() + 10
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_members(pgid) == []


def test_every_layer_reports_itself() -> None:
    report = protections()
    layers = report["layers"]
    for name in ("namespaces", "rlimits", "no_new_privs", "landlock", "seccomp", "python"):
        assert name in layers and isinstance(layers[name]["detail"], str)
    print("\n" + "\n".join(
        f"layer {n}: {'active' if v['active'] else 'INACTIVE'}: {v['detail']}"
        for n, v in layers.items()))
    assert layers["python"]["active"] and layers["no_new_privs"]["active"]


def test_candidates_that_cannot_fork_fail_alone_and_the_session_survives() -> None:
    layers = protections()["layers"]
    if "NPROC=" not in str(layers.get("rlimits", {}).get("detail")):
        pytest.skip(f"RLIMIT_NPROC does not bind here: {layers.get('rlimits')}")
    with UnguardedSandbox(timeout_s=10.0) as box:
        fill = box.run(
            "import os, signal, time\nkept = 'yes'\nkids = []\n"
            "for _ in range(200):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
            "    kids.append(pid)\n"
            "len(kids)"
        )
        assert fill.error is None, fill
        none_start = box.run_candidates([f"kept + '{i}'" for i in range(8)])
        assert all(r.error and "could not start" in r.error for r in none_start), none_start
        assert not any(r.restarted for r in none_start)
        box.discard()
        freed = box.run(
            "for pid in kids[:3]:\n    os.kill(pid, signal.SIGKILL)\n    os.waitpid(pid, 0)"
        )
        assert freed.error is None, freed
        some_start = box.run_candidates([f"kept + '{i}'" for i in range(8)])
        started = [i for i, r in enumerate(some_start) if r.error is None]
        assert 1 <= len(started) <= 3, some_start
        assert box.commit(started[0])
        assert box.run("kept").last_value_repr == "'yes'"
