"""torch and cupy must be built for the same CUDA major version; say which packages to install.

A CUDA build of torch brings its own CUDA runtime (``torch.version.cuda``); cupy comes as one
wheel per CUDA major (``cupy-cuda12x``, ``cupy-cuda13x``) and compiles the kernels of ``cuda/``
with the NVRTC of that major. When the two disagree, the first kernel launch fails deep inside
cupy, far from the cause. :func:`check_cuda_agreement` compares them at start-up, whenever a GPU
placement (or the GPU sampler) is asked for, and a mismatch is one line naming the two packages
that match torch (the extras ``gnnsys[cuda12]`` / ``gnnsys[cuda13]`` pin the same pairs).

The probes are plain functions so that the tests can stand in for them.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass

from gnnsys.errors import DeviceUnavailableError

#: CUDA major -> the cupy wheel and the NVRTC wheel built for it (what ``gnnsys[cudaNN]`` installs).
PACKAGES: dict[int, tuple[str, str]] = {
    12: ("cupy-cuda12x", "nvidia-cuda-nvrtc-cu12"),
    13: ("cupy-cuda13x", "nvidia-cuda-nvrtc"),
}
_CUPY_WHEEL = re.compile(r"^cupy-cuda(\d+)x$")


@dataclass(frozen=True)
class CudaVersions:
    """What was found.

    Attributes:
        torch_version: ``torch.__version__``; torch_cuda: ``torch.version.cuda`` (``None``: a
            CPU-only build).
        cupy: ``[(distribution, version, CUDA major)]`` of the installed cupy wheels (the major
            is ``None`` for a source build of ``cupy`` whose runtime could not be asked).
    """

    torch_version: str
    torch_cuda: str | None
    cupy: tuple[tuple[str, str, int | None], ...]

    @property
    def torch_major(self) -> int | None:
        return None if not self.torch_cuda else int(str(self.torch_cuda).split(".")[0])

    def as_dict(self) -> dict[str, object]:
        return {"torch": self.torch_version, "torch_cuda": self.torch_cuda,
                "cupy": [{"package": p, "version": v, "cuda_major": m} for p, v, m in self.cupy]}


def probe_torch() -> tuple[str, str | None]:
    """``(torch.__version__, torch.version.cuda)``."""
    import torch  # noqa: PLC0415

    return str(torch.__version__), torch.version.cuda


def probe_cupy() -> tuple[tuple[str, str, int | None], ...]:
    """The installed cupy distributions, read from their metadata (nothing is imported, except
    for a source build named ``cupy``, whose CUDA runtime is asked for its version)."""
    found = []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        m = _CUPY_WHEEL.match(name)
        if m:
            found.append((name, dist.version, int(m.group(1))))
        elif name == "cupy":
            found.append((name, dist.version, _cupy_runtime_major()))
    return tuple(sorted(set(found)))


def _cupy_runtime_major() -> int | None:
    try:
        import cupy  # noqa: PLC0415

        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001 - no CUDA library: the major stays unknown
        return None


def install_hint(major: int) -> str:
    """``pip install <cupy> <nvrtc>`` for CUDA ``major`` (and the matching extra)."""
    cupy, nvrtc = PACKAGES.get(major, (f"cupy-cuda{major}x", f"nvidia-cuda-nvrtc-cu{major}"))
    extra = f" (the extra gnnsys[cuda{major}])" if major in PACKAGES else ""
    return f"pip install {cupy} {nvrtc}{extra}"


def check_cuda_agreement(torch_probe: Callable[[], tuple[str, str | None]] | None = None,
                         cupy_probe: Callable[[], tuple] | None = None) -> CudaVersions:
    """Compare torch's CUDA major with cupy's; return what was found.

    Raises:
        DeviceUnavailableError: one line naming the two packages to install: cupy is missing,
            two cupy wheels are installed, or cupy's CUDA major differs from torch's. A CPU-only
            torch is not an error here (the device check says what is missing).
    """
    torch_version, torch_cuda = (torch_probe or probe_torch)()
    found = CudaVersions(torch_version, torch_cuda, tuple((cupy_probe or probe_cupy)()))
    major = found.torch_major
    if major is None:
        return found
    if not found.cupy:
        raise DeviceUnavailableError(
            f"the GPU placements and the GPU sampler need cupy for CUDA {major} (torch "
            f"{torch_version} is built for CUDA {torch_cuda}), and no cupy is installed: {install_hint(major)}")
    if len(found.cupy) > 1:
        names = ", ".join(f"{p} {v}" for p, v, _ in found.cupy)
        raise DeviceUnavailableError(
            f"several cupy packages are installed ({names}), which overwrite each other: keep the "
            f"one for torch's CUDA {major} (pip uninstall the others, then {install_hint(major)})")
    package, version, cupy_major = found.cupy[0]
    if cupy_major is not None and cupy_major != major:
        raise DeviceUnavailableError(
            f"torch {torch_version} is built for CUDA {major} but {package} {version} is for CUDA "
            f"{cupy_major}: pip uninstall {package}, then {install_hint(major)}")
    return found


__all__ = ["CudaVersions", "PACKAGES", "check_cuda_agreement", "install_hint", "probe_cupy",
           "probe_torch"]
