"""The fused backend's C++ CPU loops (``core/csrc/``), built on first use.

:func:`native_loops` compiles the extension with ``torch.utils.cpp_extension``
the first time a process asks for it (about a minute; the build is cached in
torch's extension directory, ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions``, under a name that carries a hash of the sources,
so later processes load it in a second: an extension already built under that name is imported
directly, without asking ninja, so another checkout or environment path with the same sources
reuses it instead of rebuilding it). It needs a C++ compiler (and ninja, a dependency). If the build fails, or
``SPARSERNN_NATIVE=0`` is set, the fused backend runs its TorchScript loops
instead (same results, slower), after one warning.

The C++ loops cover the unrouted cells on a CPU. ``single_state_backward``
(Elman) takes the arguments and gives the results of its TorchScript namesake
in :mod:`~sparsernn.core.fused_loops`; ``gru_group_forward`` and
``lstm_group_forward`` run the loops of ``gru_forward`` / ``lstm_forward``
from a group's per-layer parameters (computing the input projections
themselves); ``gru_cell_backward`` and ``lstm_cell_backward`` also compute
the cell's derivative factors inside the step (see :mod:`~sparsernn.core.fused`);
``weight_grads`` gives a layer's weight and bias gradients over a short sequence.
Every step's GEMM, and the weight gradients' one, is ``core/csrc/small_gemm.h``.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = ("module.cpp", "fused_forward.cpp", "fused_backward.cpp", "routed_forward.cpp", "routed_backward.cpp",
           "selective_forward.cpp", "selective_backward.cpp", "rhythm.cpp")
#: Drop-in replacements of the TorchScript loops of the same name.
NATIVE_FUNCTIONS = ("single_state_backward",)
# -ffast-math lets GCC vectorise exp/tanh (glibc's libmvec); -march=native: the build is for this machine.
CFLAGS = ["-O3", "-ffast-math", "-march=native", "-fopenmp-simd"]


def native_enabled() -> bool:
    """False when ``SPARSERNN_NATIVE=0`` asks for the TorchScript loops (read at every call)."""
    return os.environ.get("SPARSERNN_NATIVE", "1") != "0"


def _put_ninja_on_path() -> None:
    """torch builds with the ``ninja`` found on PATH; the pip package's binary sits in the
    environment's ``bin``, which is not on PATH when ``.venv/bin/python`` runs directly."""
    if shutil.which("ninja") is None:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def extension_name() -> str:
    """``sparsernn_fused_cpu_<hash>``: the hash of the C++ sources, the flags and torch's version, so
    two versions never overwrite each other's build in torch's shared extension directory, and a
    build under this name is valid for any checkout with the same sources."""
    digest = hashlib.sha256(" ".join(CFLAGS).encode() + torch.__version__.encode())
    for path in sorted(SOURCE_DIR.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return f"sparsernn_fused_cpu_{digest.hexdigest()[:12]}"


def _import_built(name: str) -> Optional[ModuleType]:
    """The extension ``name`` when torch's extension directory already holds its complete build,
    imported without ninja; else None (then :func:`native_loops` builds it). torch's ``load`` runs
    ninja every time, and ninja rebuilds whenever the build command differs, as it does for the
    same sources in another checkout or virtual environment (their absolute paths are in the
    command), and a process killed during such a rebuild leaves a lock that blocks every later one."""
    try:
        import importlib.util

        from torch.utils.cpp_extension import _get_build_directory

        library = Path(_get_build_directory(name, verbose=False)) / f"{name}.so"
        if not library.is_file():
            return None
        spec = importlib.util.spec_from_file_location(name, library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception:  # noqa: BLE001 - an unusable build is rebuilt by torch's load
        return None


#: The dtypes the C++ loops take; other dtypes (float16, bfloat16) run the TorchScript loops.
NATIVE_DTYPES = (torch.float32, torch.float64)


def native_for(like: torch.Tensor, applies: bool = True) -> Optional[ModuleType]:
    """The extension for tensors such as ``like`` (on a CPU, float32 or float64) when it is
    enabled and built and the caller's own condition ``applies``, else None: the one test every
    caller of the C++ loops makes."""
    usable = applies and like.device.type == "cpu" and like.dtype in NATIVE_DTYPES
    return native_loops() if usable and native_enabled() else None


@functools.cache
def native_loops() -> Optional[ModuleType]:
    """The compiled extension, or None (disabled, or the build failed: then one warning)."""
    if not native_enabled():
        return None
    try:
        from torch.utils.cpp_extension import load

        built = _import_built(extension_name())
        if built is not None:
            return built
        _put_ninja_on_path()
        return load(name=extension_name(), sources=[str(SOURCE_DIR / name) for name in SOURCES],
                    extra_cflags=CFLAGS, extra_include_paths=[str(SOURCE_DIR)], verbose=False)
    except Exception as error:  # noqa: BLE001 - any build failure means: use the TorchScript loops
        warnings.warn(f"sparsernn: building the fused backend's C++ loops failed ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); using the TorchScript loops "
                      f"(same results, slower). Set SPARSERNN_NATIVE=0 to skip the build.", RuntimeWarning,
                      stacklevel=2)
        return None
