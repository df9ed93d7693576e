"""setup.py — only what pyproject.toml cannot say: the built library and the key-value task file
go into the package, so an installed copy needs neither the repository nor MOLT_LIB.

The library: $MOLT_LIB (a file, or a directory holding libmolt.so), else ../build/libmolt.so of
the repository this directory is in. Without one the build stops with a message (run `make`).
The wheel is tagged for this platform, as it holds a native library.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def find_lib():
    env = os.environ.get("MOLT_LIB")
    if env:
        p = os.path.join(env, "libmolt.so") if os.path.isdir(env) else env
    else:
        p = os.path.join(HERE, "..", "build", "libmolt.so")
    if not os.path.exists(p):
        raise SystemExit(f"molt: {p} not found: build the library first (make), or set MOLT_LIB "
                         "to a libmolt.so")
    return os.path.realpath(p)


class BuildPy(build_py):
    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "molt")
        os.makedirs(dst, exist_ok=True)
        shutil.copyfile(find_lib(), os.path.join(dst, "libmolt.so"))
        kv = os.path.join(HERE, "..", "data", "kv_task.json")
        if os.path.exists(kv):
            shutil.copyfile(kv, os.path.join(dst, "kv_task.json"))


class NativeDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPy}, distclass=NativeDistribution)
