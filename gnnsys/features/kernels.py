"""Finding, compiling and loading the CUDA kernels shipped in ``cuda/`` (package ``gnnsys.kernels``).

Kernels are compiled at run time from source with NVRTC through cupy (``cupy.RawModule``, whose
compiled binaries cupy caches on disk). Nothing here needs a GPU until :func:`load_module`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from types import ModuleType

import torch

from gnnsys.errors import DeviceUnavailableError

GATHER_SOURCE = "gather.cu"
#: options given to NVRTC for every shipped kernel file.
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++17",)
_REPO_CUDA_DIR = Path(__file__).resolve().parents[2] / "cuda"


def kernel_source(filename: str = GATHER_SOURCE) -> str:
    """Return the text of a shipped ``.cu`` file.

    Looks in the installed package ``gnnsys.kernels`` first (``pyproject.toml`` installs
    ``cuda/`` there), then in the source checkout's ``cuda/`` folder.

    Raises:
        DeviceUnavailableError: the file is in neither place (a broken installation).
    """
    try:
        resource = importlib.resources.files("gnnsys.kernels").joinpath(filename)
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    path = _REPO_CUDA_DIR / filename
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise DeviceUnavailableError(
        f"CUDA kernel source {filename} is missing: not in package gnnsys.kernels nor in "
        f"{_REPO_CUDA_DIR} (reinstall gnnsys)"
    )


def nvrtc_compile_ptx(source: str, filename: str, arch: str = "compute_80",
                      options: tuple[str, ...] = NVRTC_OPTIONS) -> str:
    """Compile ``source`` to PTX with NVRTC through cupy's bindings; needs no GPU.

    This is the compiler used at run time, so the tests call it to prove the shipped source
    compiles on that path too.

    Raises:
        DeviceUnavailableError: cupy or NVRTC is not available.
        RuntimeError: the source does not compile (the NVRTC log is in the message).
    """
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise DeviceUnavailableError(f"NVRTC is not available through cupy: {exc}") from exc
    prog = nvrtc.createProgram(source, filename, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *options])
        except Exception as exc:  # cupy raises NVRTCError
            log = nvrtc.getProgramLog(prog)
            raise RuntimeError(f"NVRTC failed to compile {filename} for {arch}:\n{log}") from exc
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


def require_cuda(placement: str, need_cupy: bool) -> ModuleType | None:
    """Check that this machine can provide ``placement``; return the cupy module if needed.

    Raises:
        DeviceUnavailableError: listing everything that is missing (a CUDA-enabled torch, a
            visible GPU, cupy).
    """
    missing: list[str] = []
    if torch.version.cuda is None:
        missing.append(f"torch {torch.__version__} is a CPU-only build (no CUDA support)")
    elif not torch.cuda.is_available():
        missing.append("torch.cuda.is_available() is False (no visible CUDA GPU or driver)")
    cupy = None
    if need_cupy:
        try:
            import cupy  # noqa: PLC0415 - optional dependency
        except Exception as exc:  # ImportError, or a CUDA library failing to load
            missing.append(f"cupy cannot be imported ({exc}); install gnnsys[cuda12]")
            cupy = None
        else:
            try:
                if cupy.cuda.runtime.getDeviceCount() < 1:
                    missing.append("cupy sees no CUDA device")
            except Exception as exc:  # CUDARuntimeError without a driver
                missing.append(f"cupy cannot use CUDA ({exc})")
    if missing:
        raise DeviceUnavailableError(
            f"placement={placement!r} needs a CUDA GPU" + (" and cupy" if need_cupy else "")
            + ", but " + "; ".join(missing)
            + ". Use placement='cpu' or 'mmap' on this machine."
        )
    return cupy


def load_module(cupy: ModuleType, filename: str = GATHER_SOURCE):
    """Compile (or fetch from cupy's cache) the shipped ``filename`` as a ``cupy.RawModule``.

    Must be called with the target device current (``with cupy.cuda.Device(i)``).
    """
    return cupy.RawModule(code=kernel_source(filename), options=NVRTC_OPTIONS)
