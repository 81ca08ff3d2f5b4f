"""pipeline.prefetch: background imports, in fresh interpreters (sys.modules is per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_imports_in_a_background_thread() -> None:
    done = _run(
        "import sys\n"
        "from pipeline.prefetch import import_in_background\n"
        "assert 'pipeline.db.documents' not in sys.modules\n"
        "t = import_in_background('pipeline.db.documents')\n"
        "assert t is not None and t.daemon\n"
        "t.join()\n"
        "assert 'pydantic' in sys.modules and 'pipeline.db.documents' in sys.modules\n"
        "assert import_in_background('pipeline.db.documents') is None\n"
        "print('ok')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    assert done.stderr == ""


def test_a_failing_import_is_left_to_the_caller() -> None:
    done = _run(
        "import sys\n"
        "from pipeline.prefetch import import_in_background\n"
        "t = import_in_background('no_such_module_xyz', 'json')\n"
        "t.join()\n"
        "try:\n"
        "    import no_such_module_xyz\n"
        "except ImportError:\n"
        "    print('raised')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "raised\n"
    assert done.stderr == ""  # nothing printed by the background thread
