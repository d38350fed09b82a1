"""Finding, compiling and loading the CUDA kernels shipped in ``cuda/`` (package ``gnnsys.kernels``).

Kernels are compiled at run time from source with NVRTC through cupy (``cupy.RawModule``, whose
compiled binaries cupy caches on disk, in ``$CUPY_CACHE_DIR``, default ``~/.cupy/kernel_cache``:
a second process loads them without compiling). :func:`compiled_kernels` compiles a file and
looks up every one of its kernels (``get_function``) once per process and device, when a feature
store or a GPU sampler is built, so no batch pays for compilation or a lookup. Nothing here
needs a GPU until :func:`load_module`.
"""

from __future__ import annotations

import functools
import importlib.resources
import threading
from pathlib import Path
from types import ModuleType

import torch

from gnnsys.errors import DeviceUnavailableError
from gnnsys.features.launch_plan import (
    INT8_CACHED_GATHER_KERNEL,
    INT8_GATHER_KERNEL,
    all_gather_kernels,
)

GATHER_SOURCE = "gather.cu"
SAMPLE_SOURCE = "sample.cu"
#: the extern "C" kernels of each shipped file (looked up eagerly by :func:`compiled_kernels`).
KERNEL_NAMES: dict[str, tuple[str, ...]] = {
    GATHER_SOURCE: (*all_gather_kernels(), INT8_GATHER_KERNEL, INT8_CACHED_GATHER_KERNEL),
    SAMPLE_SOURCE: ("gnnsys_sample_positions", "gnnsys_positions_to_ids_i32",
                    "gnnsys_positions_to_ids_i64"),
}
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
    if need_cupy and not missing:
        # torch and cupy built for different CUDA majors fail at the first kernel: say so now
        from gnnsys.features.cuda_versions import check_cuda_agreement  # noqa: PLC0415

        check_cuda_agreement()
    if need_cupy:
        try:
            import cupy  # noqa: PLC0415 - optional dependency
        except Exception as exc:  # ImportError, or a CUDA library failing to load
            missing.append(f"cupy cannot be imported ({exc}); install gnnsys[cuda12] or gnnsys[cuda13], the one matching torch's CUDA")
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


class KernelSet:
    """The kernels of one ``.cu`` file compiled for one device, every function looked up.

    Attributes:
        filename: the source file; device_index: the CUDA device.
        seconds: wall time of compiling (or loading from cupy's disk cache) and the lookups.
    """

    def __init__(self, cupy: ModuleType, filename: str, device_index: int):
        import time  # noqa: PLC0415

        self.filename = filename
        self.device_index = int(device_index)
        t0 = time.perf_counter()
        with cupy.cuda.Device(self.device_index):
            self.module = load_module(cupy, filename)
            self._functions = {name: self.module.get_function(name)
                               for name in KERNEL_NAMES[filename]}
        self.seconds = time.perf_counter() - t0

    def function(self, name: str):
        """The ``cupy.RawKernel`` of ``name`` (a ``KeyError`` for a name the file lacks)."""
        return self._functions[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._functions)


_COMPILE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _compiled(cupy: ModuleType, filename: str, device_index: int) -> KernelSet:
    return KernelSet(cupy, filename, device_index)


def compiled_kernels(cupy: ModuleType, filename: str, device_index: int) -> KernelSet:
    """The :class:`KernelSet` of ``filename`` on ``device_index``: compiled and looked up on the
    first call in this process, the same object afterwards (a per-process cache of compiled
    code, like cupy's own; the lock keeps two loader threads from compiling it twice)."""
    with _COMPILE_LOCK:
        return _compiled(cupy, filename, int(device_index))
