"""The README's grpcurl flow, run as the script it is (the ```sh block under
"The same flow with grpcurl"), against this module's mesh, from a folder
laid out as the README assumes (.venv, var/demo/ after `advex demo
--poisoning`). It uses jq and curl, as the README says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from advex.cli import digits

README = Path(__file__).resolve().parents[2] / "README.md"


def grpcurl_flow() -> str:
    section = README.read_text().split("## The same flow with grpcurl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_grpcurl_flow_runs_as_written(mesh, digits_files, tmp_path):
    missing = [tool for tool in ("jq", "curl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the README's grpcurl flow needs {', '.join(missing)}: apt-get install {' '.join(missing)}")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    demo = tmp_path / "var" / "demo"
    demo.mkdir(parents=True)
    for made in digits_files:  # the demo's model and test set
        shutil.copy(made, demo / Path(made).name)
    digits.demo_training_file(demo)
    script = tmp_path / "flow.sh"
    script.write_text(grpcurl_flow())
    env = {**os.environ, "G": mesh.gateway_address}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    assert "advex.v1.EvaluationService" in out  # grpc list
    assert out.count("EVALUATION_STATE_SUCCEEDED") >= 2  # both evaluations ended well
    assert '"attack": "cw"' in out and '"poison_count": "20"' in out
    assert re.search(r"\d+ samples", out) and re.search(r"\d+ images", out)  # the pieces streamed
