"""The learn extra stays optional: ``import stengine`` never imports torch, and
``import stengine.learn`` without torch says how to install it."""

import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_import_stengine_does_not_import_torch():
    r = _run("import sys, stengine; import stengine.ops, stengine.index, stengine.io; "
             "print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_learn_without_torch_names_the_extra():
    # sys.modules[name] = None makes `import name` raise ImportError, as if not installed
    r = _run("import sys; sys.modules['torch'] = None\n"
             "try:\n    import stengine.learn\nexcept ImportError as e:\n    print(e)\n")
    assert r.returncode == 0, r.stderr
    assert "pip install 'stengine[learn]'" in r.stdout


def test_learn_imports_with_the_extra():
    pytest.importorskip("torch")
    import stengine.learn as learn

    missing = [n for n in learn.__all__ if getattr(learn, n, None) is None]
    assert not missing, f"stengine.learn names not built: {missing}"
