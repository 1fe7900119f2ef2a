"""`schoolgate doctor` in a development checkout: no /etc/schoolgate, so it checks the
checkout (policies/school.yaml, var/) and says so, instead of four FAILs about /etc."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from proxy_addons.ops.doctor.checkout import find_checkout
from tests.conftest import ROOT, VENV_BIN

SCHOOLGATE = str(VENV_BIN / "schoolgate")


def _doctor(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCHOOLGATE, "doctor", "--env", "/nonexistent/schoolgate.env", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_doctor_in_a_checkout_checks_the_checkout_and_says_so(tmp_path: Path) -> None:
    var = tmp_path / "var"  # a fresh data folder: nothing made yet, as after a clone
    done = _doctor("--var", str(var), "--json")
    found = {c["name"]: c for c in json.loads(done.stdout)}
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the development checkout" in found["checked"]["message"]
    assert str(ROOT / "policies" / "school.yaml") in found["checked"]["message"]
    assert all(c["level"] != "FAIL" for c in found.values()), found
    assert str(var) in found["lists"]["message"]  # the checkout's policy loaded; no index yet
    for made_by_run in ("ca", "store"):
        assert found[made_by_run]["level"] == "WARN"
        assert found[made_by_run]["fix"] == "make run (creates it on start)"
    assert "/etc/schoolgate/school.yaml" not in done.stdout
    assert "permissions" not in found and "firewall" not in found
    assert found["proxy port"]["fix"] == "make run"

    plain = _doctor("--var", str(var))
    assert plain.stdout.splitlines()[0].startswith("OK    checked           the development")


def test_an_installation_is_named_and_a_plain_folder_is_no_checkout(tmp_path: Path) -> None:
    assert find_checkout(ROOT) == ROOT
    assert find_checkout(tmp_path) is None
    env = tmp_path / "schoolgate.env"
    env.write_text(f"SCHOOLGATE_POLICY={tmp_path / 'school.yaml'}\nSCHOOLGATE_VAR={tmp_path}\n")
    done = subprocess.run(
        [SCHOOLGATE, "doctor", "--env", str(env), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = {c["name"]: c for c in json.loads(done.stdout)}
    assert found["checked"]["message"].startswith(f"the installation set up by {env}")
    assert done.returncode == 1  # no policy there: an installation's problems stay FAILs
    assert found["lists"]["level"] == "FAIL"
