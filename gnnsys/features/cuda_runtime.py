"""The handful of CUDA calls gnnsys makes, behind one small interface.

Everything the GPU paths do to the device goes through a :class:`CudaRuntime`: side streams,
events (record, wait, query, synchronize), allocations on a stream, asynchronous copies,
pinned host buffers, host-memory registration (``cudaHostRegister``) and kernel launches.
:class:`TorchCupyRuntime` is the real one (torch streams and events, cupy for registration and
NVRTC kernels). The tests hand the same code a recording stand-in (``tests/cuda_standin.py``)
that runs every enqueued operation later, in stream order, on the CPU and logs the order of the
calls; that proves the *ordering logic* of the host code (a consumer waits on the event of the
work it reads, a buffer is reused only after the event recorded after its last copy), and
claims nothing about the hardware.

Terms used throughout:
    stream: an object of the runtime (``torch.cuda.Stream`` for the real one).
    event: an object with ``query() -> bool`` and ``synchronize()`` (``torch.cuda.Event``).
    device tensor: a tensor the runtime allocated for the GPU (a CPU tensor in the stand-in).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gnnsys.errors import DeviceUnavailableError
from gnnsys.features.kernels import compiled_kernels, require_cuda

#: cudaHostRegister flags (driver_types.h).
HOST_REGISTER_PORTABLE = 0x01
HOST_REGISTER_MAPPED = 0x02
HOST_REGISTER_READ_ONLY = 0x08
#: cudaDeviceAttr values queried before registering (driver_types.h).
ATTR_CAN_USE_HOST_POINTER = 91        # cudaDevAttrCanUseHostPointerForRegisteredMem
ATTR_HOST_REGISTER_SUPPORTED = 99     # cudaDevAttrHostRegisterSupported
ATTR_HOST_REGISTER_READ_ONLY = 113    # cudaDevAttrHostRegisterReadOnlySupported


class CudaRuntime:
    """Interface of the CUDA calls (see the module docstring). Every method documents the real
    semantics; a stand-in must keep them (in particular: work enqueued on a stream runs in
    enqueue order, after every event the stream was told to wait for)."""

    #: what a runtime is called in messages
    name = "cuda"

    # -- devices ------------------------------------------------------------------------
    def require(self, what: str, need_cupy: bool) -> None:
        """Raise :class:`DeviceUnavailableError` naming what is missing for ``what``."""
        raise NotImplementedError

    def device(self, requested: Any = None) -> torch.device:
        """The torch device that device tensors are allocated on (``requested``: ``"cuda"``,
        ``"cuda:1"``, a ``torch.device`` or ``None`` for the current GPU)."""
        raise NotImplementedError

    def multiprocessors(self, device: torch.device) -> int:
        raise NotImplementedError

    def device_attribute(self, attribute: int, device: torch.device) -> int:
        raise NotImplementedError

    # -- streams and events -------------------------------------------------------------
    def new_stream(self, device: torch.device) -> Any:
        raise NotImplementedError

    def current_stream(self, device: torch.device) -> Any:
        raise NotImplementedError

    def new_event(self) -> Any:
        raise NotImplementedError

    def record(self, event: Any, stream: Any) -> None:
        """``event`` completes when the work enqueued on ``stream`` so far has run."""
        raise NotImplementedError

    def wait_event(self, stream: Any, event: Any) -> None:
        """Work enqueued on ``stream`` from now on runs after ``event`` (no host blocking)."""
        raise NotImplementedError

    def record_stream(self, tensor: torch.Tensor, stream: Any) -> None:
        """``tensor`` (allocated on another stream) is used by ``stream``: its memory is not
        reused before the work enqueued on ``stream`` so far has run."""
        raise NotImplementedError

    def synchronize_stream(self, stream: Any) -> None:
        """Block the host until everything enqueued on ``stream`` has run."""
        raise NotImplementedError

    # -- memory ---------------------------------------------------------------------------
    def empty(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device,
              stream: Any) -> torch.Tensor:
        """An uninitialised device tensor allocated for use on ``stream``."""
        raise NotImplementedError

    def pinned_empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised page-locked host tensor (the source of asynchronous copies)."""
        raise NotImplementedError

    def copy(self, dst: torch.Tensor, src: torch.Tensor, stream: Any) -> None:
        """Enqueue ``dst.copy_(src)`` on ``stream`` (asynchronous; host sources must be
        pinned, and must not be written before an event recorded after the copy completes)."""
        raise NotImplementedError

    def run(self, stream: Any, label: str, fn: Callable[[], None]) -> None:
        """Enqueue ``fn`` (torch operations on device tensors, writing into tensors allocated
        beforehand) on ``stream``; ``label`` names it in a stand-in's log."""
        raise NotImplementedError

    # -- host registration ----------------------------------------------------------------
    def host_register(self, ptr: int, nbytes: int, flags: int) -> None:
        """Pin ``nbytes`` of host memory at ``ptr`` in place (``cudaHostRegister``); raises
        :class:`HostRegisterError` with the CUDA error code."""
        raise NotImplementedError

    def host_unregister(self, ptr: int) -> None:
        raise NotImplementedError

    def device_pointer(self, ptr: int) -> int:
        """The address GPU threads use for registered host memory at ``ptr``."""
        raise NotImplementedError

    # -- kernels --------------------------------------------------------------------------
    def kernels(self, filename: str, device: torch.device) -> Any:
        """The compiled kernels of ``cuda/<filename>`` for ``device`` (compiled, with every
        ``get_function`` done, once per process)."""
        raise NotImplementedError

    def launch(self, kernels: Any, name: str, grid: int, block: int, args: tuple,
               stream: Any) -> None:
        """Enqueue kernel ``name`` of ``kernels`` on ``stream`` with a 1-D launch."""
        raise NotImplementedError


class HostRegisterError(RuntimeError):
    """``cudaHostRegister`` failed; ``code`` is the CUDA error code (``None`` if unknown)."""

    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.code = code


def _cuda_error_code(exc: BaseException) -> int | None:
    """The ``cudaError_t`` of a cupy ``CUDARuntimeError`` (``status``), else ``None``."""
    code = getattr(exc, "status", None)
    return int(code) if isinstance(code, (int, np.integer)) else None


@functools.lru_cache(maxsize=None)
def _cupy_module() -> ModuleType:
    import cupy  # noqa: PLC0415 - optional dependency

    return cupy


class TorchCupyRuntime(CudaRuntime):
    """The real runtime: torch's CUDA streams, events and caching allocator; cupy for
    ``cudaHostRegister``, device attributes and the NVRTC-compiled kernels of ``cuda/``."""

    name = "cuda"

    def __init__(self) -> None:
        self._cupy_streams: dict[int, Any] = {}

    # -- devices
    def require(self, what: str, need_cupy: bool) -> None:
        require_cuda(what, need_cupy=need_cupy)

    def device(self, requested: Any = None) -> torch.device:
        dev = torch.device("cuda" if requested is None else requested)
        if dev.type != "cuda":
            raise DeviceUnavailableError(f"{requested!r} is not a CUDA device")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        return dev

    def multiprocessors(self, device: torch.device) -> int:
        return int(torch.cuda.get_device_properties(device).multi_processor_count)

    def device_attribute(self, attribute: int, device: torch.device) -> int:
        return int(_cupy_module().cuda.runtime.deviceGetAttribute(attribute, device.index))

    # -- streams and events
    def new_stream(self, device: torch.device) -> torch.cuda.Stream:
        return torch.cuda.Stream(device=device)

    def current_stream(self, device: torch.device) -> torch.cuda.Stream:
        return torch.cuda.current_stream(device)

    def new_event(self) -> torch.cuda.Event:
        return torch.cuda.Event()

    def record(self, event: torch.cuda.Event, stream: torch.cuda.Stream) -> None:
        event.record(stream)

    def wait_event(self, stream: torch.cuda.Stream, event: torch.cuda.Event) -> None:
        stream.wait_event(event)

    def record_stream(self, tensor: torch.Tensor, stream: torch.cuda.Stream) -> None:
        tensor.record_stream(stream)

    def synchronize_stream(self, stream: torch.cuda.Stream) -> None:
        stream.synchronize()

    # -- memory
    def empty(self, shape, dtype, device, stream) -> torch.Tensor:
        with torch.cuda.stream(stream):
            return torch.empty(tuple(shape), dtype=dtype, device=device)

    def pinned_empty(self, shape, dtype) -> torch.Tensor:
        return torch.empty(tuple(shape), dtype=dtype, pin_memory=True)

    def copy(self, dst, src, stream) -> None:
        with torch.cuda.stream(stream):
            dst.copy_(src, non_blocking=True)

    def run(self, stream, label, fn) -> None:
        with torch.cuda.stream(stream):
            fn()

    # -- host registration
    def host_register(self, ptr: int, nbytes: int, flags: int) -> None:
        cupy = _cupy_module()
        try:
            cupy.cuda.runtime.hostRegister(ptr, nbytes, flags)
        except Exception as exc:  # cupy's CUDARuntimeError
            raise HostRegisterError(str(exc), _cuda_error_code(exc)) from exc

    def host_unregister(self, ptr: int) -> None:
        _cupy_module().cuda.runtime.hostUnregister(ptr)

    def device_pointer(self, ptr: int) -> int:
        attrs = _cupy_module().cuda.runtime.pointerGetAttributes(ptr)
        return int(attrs.devicePointer)

    # -- kernels
    def kernels(self, filename: str, device: torch.device):
        return compiled_kernels(_cupy_module(), filename, device.index)

    def launch(self, kernels, name, grid, block, args, stream) -> None:
        cupy = _cupy_module()
        fn = kernels.function(name)
        with cupy.cuda.Device(kernels.device_index), self._cupy_stream(stream, kernels.device_index):
            fn((int(grid),), (int(block),), args)

    def _cupy_stream(self, stream: torch.cuda.Stream, device_index: int):
        """The torch stream as a cupy stream (kernels launched inside ``with`` it run on it)."""
        key = int(stream.cuda_stream)
        view = self._cupy_streams.get(key)
        if view is None:
            cupy = _cupy_module()
            if hasattr(stream, "__cuda_stream__") and hasattr(cupy.cuda.Stream, "from_external"):
                view = cupy.cuda.Stream.from_external(stream)
            else:
                with warnings.catch_warnings():  # ExternalStream is deprecated in cupy 14
                    warnings.simplefilter("ignore", DeprecationWarning)
                    view = cupy.cuda.ExternalStream(key, device_index)
            self._cupy_streams[key] = view
        return view


@functools.lru_cache(maxsize=1)
def default_runtime() -> TorchCupyRuntime:
    """The real runtime (one per process: it only caches cupy views of torch streams)."""
    return TorchCupyRuntime()


def resolve_runtime(runtime: CudaRuntime | None) -> CudaRuntime:
    return default_runtime() if runtime is None else runtime


__all__ = [
    "CudaRuntime",
    "TorchCupyRuntime",
    "HostRegisterError",
    "default_runtime",
    "resolve_runtime",
    "HOST_REGISTER_PORTABLE",
    "HOST_REGISTER_MAPPED",
    "HOST_REGISTER_READ_ONLY",
    "ATTR_CAN_USE_HOST_POINTER",
    "ATTR_HOST_REGISTER_SUPPORTED",
    "ATTR_HOST_REGISTER_READ_ONLY",
]
