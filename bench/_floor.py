"""The GEMM floor (_bench_floor.pyx), compiled on first use.

It is a benchmark tool, not part of cmlp's API, so the wheel does not carry
it: bench/ compiles it here against the installed cmlp's .pxd files (Cython
and a C compiler needed, as for `pip install .`), with the flags of cmlp's
own release build, into bench/build/<key>/, keyed by the Python, cmlp and the
sources, so a rebuilt or upgraded cmlp gets a fresh floor.
"""
import hashlib
import importlib
import os
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "_bench_floor.pyx")


def _key():
    import cmlp
    digest = hashlib.sha256()
    package = os.path.dirname(cmlp.__file__)
    for path in [SOURCE] + sorted(os.path.join(package, name) for name in os.listdir(package)
                                  if name.endswith(".pxd")):
        with open(path, "rb") as source:
            digest.update(source.read())
    tag = sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag
    return f"{tag}-cmlp{cmlp.__version__}-{digest.hexdigest()[:12]}"


def _build(out_dir):
    import numpy
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    ext = Extension("_bench_floor", [SOURCE], include_dirs=[numpy.get_include()],
                    extra_compile_args=["-O3", "-g0", "-fno-math-errno", "-ffp-contract=off"])
    modules = cythonize([ext], build_dir=os.path.join(out_dir, "c"), quiet=True,
                        compiler_directives={"language_level": 3, "boundscheck": False,
                                             "wraparound": False, "cdivision": True})
    dist = Distribution({"ext_modules": modules, "script_name": "setup.py"})
    command = dist.get_command_obj("build_ext")
    command.build_lib = out_dir
    command.build_temp = os.path.join(out_dir, "tmp")
    command.ensure_finalized()
    command.run()


def load():
    """Import the GEMM floor module, compiling it first if needed."""
    out_dir = os.path.join(os.environ.get("CMLP_BENCH_BUILD", os.path.join(HERE, "build")), _key())
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not os.path.exists(os.path.join(out_dir, "_bench_floor" + suffix)):
        try:
            _build(out_dir)
        except ImportError as error:
            raise ImportError("the GEMM floor is compiled on first use and needs Cython and "
                              "setuptools: pip install 'cmlp[test]' (or Cython setuptools)"
                              ) from error
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    return importlib.import_module("_bench_floor")
