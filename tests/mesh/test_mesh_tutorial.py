"""docs/tutorial.md, run: every `console` block's commands (`$ ` lines, with
their `\\` continuations) and every `python` block, in order, in one bash
session in an empty folder, against this module's mesh, so the tutorial
cannot rot. The one step not run is `make run` (the mesh itself;
tests/mesh/test_mesh_up.py runs `advex up`). Then the files the tutorial
promises are checked, and its two pictures are remade from this run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
TUTORIAL = DOCS / "tutorial.md"
_BLOCK = re.compile(r"^```(console|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def tutorial_script(text: str) -> str:
    """The tutorial's blocks as one bash script."""
    lines = ["set -euo pipefail"]
    for index, (kind, body) in enumerate(_BLOCK.findall(text)):
        if kind == "python":
            lines += [f"cat > block_{index}.py <<'PYTHON'", body.rstrip("\n"), "PYTHON", f"python block_{index}.py"]
            continue
        command: list[str] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                command = [line[2:]]
            elif command:
                command.append(line)
            else:
                continue
            if not line.endswith("\\"):
                lines.append("\n".join(command))
                command = []
    return "\n".join(lines) + "\n"


def test_the_tutorial_finds_its_commands():
    script = tutorial_script(TUTORIAL.read_text())
    assert script.count("python block_") == 3
    assert "advex upload model my_model.keras" in script and "advex compare" in script
    assert "--max-samples 120 --seed 0 --keep-adversarial --name tutorial | cut" in script  # continuation joined
    # Every picture the tutorial shows exists.
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", TUTORIAL.read_text()):
        assert (DOCS / picture).is_file(), picture


def test_every_command_of_the_tutorial_runs(mesh, tmp_path):
    script = tmp_path / "tutorial.sh"
    script.write_text(tutorial_script(TUTORIAL.read_text()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVEX_")}
    env.update(ADVEX_GATEWAY_ADDR=mesh.gateway_address, PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
               MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    for made in ("report.html", "compare.html", "backdoor.html", "adversarial-example.png", "backdoor.png"):
        assert (tmp_path / made).stat().st_size > 1000, made
    assert "every one of 2 threshold checks holds" in done.stderr
    assert "B - A" in done.stdout  # the comparison table
    # The pictures of this run, for a look (the committed ones came from the same code).
    out = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
    out.mkdir(parents=True, exist_ok=True)
    for picture in ("adversarial-example.png", "backdoor.png"):
        shutil.copy(tmp_path / picture, out / f"tutorial-{picture}")
