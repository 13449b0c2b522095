"""Bench-only timing hook, loaded by Python at start-up when bench puts this directory on PYTHONPATH.

Does nothing unless VSB_TRACE names a file. Then, in every Python process of a `pulumi` run (the
program and the dynamic-provider process), it appends JSON lines to that file:
  {"ev": "start", "pid", "t", "role"}                  interpreter start (role: program | provider | other)
  {"ev": "op", "pid", "cls", "op", "t0", "t1", "lv"}   one provider operation (create/read/update/delete/
                                                        diff) and the seconds spent inside
                                                        with_connection (libvirt calls + local tools)
It wraps virtstack.provider.resources after import; virtstack's code is not changed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

_PATH = os.environ.get("VSB_TRACE")


def _write(record: dict) -> None:
    line = json.dumps(record) + "\n"
    with _lock, open(_PATH, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
        f.write(line)


_lock = threading.Lock()


def _role() -> str:
    argv = " ".join(sys.argv)
    if "pulumi.dynamic" in argv or sys.argv[:1] == ["-m"]:
        return "provider"
    if "pulumi-language-python-exec" in argv or "__main__.py" in argv:
        return "program"
    return "other"


def _patch(mod) -> None:
    local = threading.local()

    def timed(original_with):
        def with_connection(uri, operation):
            t0 = time.time()
            try:
                return original_with(uri, operation)
            finally:
                local.lv = getattr(local, "lv", 0.0) + time.time() - t0

        return with_connection

    # The providers live in virtstack.provider.{pools,networks,volumes,domains} (imported by the time
    # resources has executed); each calls its own module's with_connection.
    for sub_name, sub in list(sys.modules.items()):
        wraps = sub_name.startswith("virtstack.provider.") and sub_name != "virtstack.provider.connection"
        if wraps and hasattr(sub, "with_connection"):
            sub.with_connection = timed(sub.with_connection)
    for cls_name in ("PoolProvider", "NetworkProvider", "VolumeProvider", "DomainProvider"):
        cls = getattr(mod, cls_name, None)
        if cls is None:
            continue
        for op in ("create", "read", "update", "delete", "diff"):
            if op not in cls.__dict__:
                continue
            orig = cls.__dict__[op]

            def wrapped(self, *args, __orig=orig, __op=op, __cls=cls_name, **kwargs):
                local.lv = 0.0
                t0 = time.time()
                try:
                    return __orig(self, *args, **kwargs)
                finally:
                    _write(
                        {
                            "ev": "op",
                            "pid": os.getpid(),
                            "cls": __cls,
                            "op": __op,
                            "t0": t0,
                            "t1": time.time(),
                            "lv": local.lv,
                        }
                    )

            setattr(cls, op, wrapped)


class _Finder:
    """Patches virtstack.provider.resources right after it is executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "virtstack.provider.resources":
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _PATH:
    _write({"ev": "start", "pid": os.getpid(), "t": time.time(), "role": _role(), "argv": sys.argv[:3]})
    sys.meta_path.insert(0, _Finder())
