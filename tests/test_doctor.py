"""`edgeagent doctor`: real checks on this machine, and a broken setup diagnosed in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeagent.cli import main
from edgeagent.models.registry import Registry


def _register(model: Path, name: str = "m") -> None:
    reg = Registry.load()
    reg.add(model, name=name)
    reg.default = name
    reg.save()


@pytest.mark.slow
def test_doctor_json_on_a_working_install(model_copy: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _register(model_copy)
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert checks["model"]["status"] == "ok" and str(model_copy) in checks["model"]["detail"]
    assert checks["model loads"]["status"] == "ok"
    assert "tok/s" in checks["model loads"]["detail"]
    assert checks["code tool"]["status"] == "ok"
    assert checks["cpu features"]["status"] == "ok"
    assert checks["llama-cpp-python"]["detail"][0].isdigit()
    # no wiki yet: a warning with the command that fixes it, not a failure
    assert checks["wiki"]["status"] == "warn" and "wiki starter" in checks["wiki"]["fix"]


def test_doctor_deleted_model_is_one_line_and_exit_1(model_copy: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _register(model_copy, "student")
    model_copy.unlink()
    assert main(["doctor", "--quick"]) == 1
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if line.startswith("✗")]
    assert len(failing) == 1
    assert "student" in failing[0] and "missing" in failing[0]
    assert "fix:" in out and "1 problem found" in out


def test_doctor_without_any_model_says_how_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--quick", "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["model"]["status"] == "fail"
    assert "fetch-default" in checks["model"]["fix"]


def test_llama_build_flags_are_read_from_the_library() -> None:
    from edgeagent.doctor import cpu_flags, llama_build_flags

    flags = llama_build_flags()
    assert "AVX2" in flags  # packaging/install.sh builds with -DGGML_AVX2=ON
    have = cpu_flags()
    assert have is None or "avx2" in have
