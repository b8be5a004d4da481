"""Only the attack image carries a deep-learning framework: importing every
module of the gateway, storage, scoring, core and protos packages (what
their images hold) must never import TensorFlow, Keras, PyTorch or JAX."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRAMEWORKS = ("tensorflow", "keras", "torch", "jax")

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
imported = []
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if module.name.endswith(".__main__"):
        continue  # runs the service
    importlib.import_module(module.name)
    imported.append(module.name)
frameworks = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"imported": imported, "frameworks": frameworks}))
"""


@pytest.mark.parametrize("package", ["advex.gateway", "advex.storage", "advex.scoring", "advex.core", "advex.v1"])
def test_importing_every_module_pulls_in_no_framework(package):
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, package, json.dumps(FRAMEWORKS)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert len(found["imported"]) >= 3, found  # the walk found the package's modules
    assert found["frameworks"] == [], f"{package} imports {found['frameworks']}"


def test_the_check_sees_what_a_package_imports():
    # The standard library's email package imports its own modules and
    # urllib's: the walk and the look at sys.modules see them.
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, "email", json.dumps(["email", "urllib", "tensorflow"])],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["frameworks"] == ["email", "urllib"]
