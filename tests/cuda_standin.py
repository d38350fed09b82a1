"""A recording stand-in for the CUDA calls of gnnsys (``gnnsys.features.cuda_runtime``), for CPU tests.

``RecordingRuntime`` keeps the semantics the host code relies on, and nothing more:

* work enqueued on a stream (copies, kernel launches, torch operations) does **not** run when it
  is enqueued: it runs later, in stream order, when the host waits for it (an event's
  ``synchronize()``, ``synchronize_stream``) or when a stream that waits for it runs;
* ``wait_event(stream, event)`` orders the stream after the event; ``record(event, stream)``
  completes the event when the stream's work up to it has run;
* every call is appended to ``log`` in call order (``("launch", kernel, stream)``, ``("record",
  event, stream)``, ``("wait", stream, event)``, ``("run", label, stream)``,
  ``("complete", event)``, ...), so a test can assert the order of the protocol;
* a copy checks, when it finally runs, that its host source still holds the bytes it held when
  the copy was enqueued: a buffer written again before its copy ran (a released-too-early pinned
  buffer) is a race, recorded in ``races``.

"Device" tensors are CPU tensors; kernels run under the CPU emulation of ``tests/cuda_emu``
(the very ``.cu`` sources). This proves the ordering logic of gnnsys's host code; it proves
nothing about the hardware (a real GPU run does: ``bench/gpu_check.sh``).
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gnnsys.features.cuda_runtime import CudaRuntime, HostRegisterError
from gnnsys.features.launch_plan import all_gather_kernels

REPO = Path(__file__).resolve().parents[1]
EMU_DIR = Path(__file__).resolve().parent / "cuda_emu"


def build_emu_library(out_dir: Path) -> ctypes.CDLL:
    """Compile ``cuda/gather.cu`` and ``cuda/sample.cu`` for the host under ``cuda_emu.h``
    (``tests/cuda_emu/launcher.cpp``) and load it with its argument types."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise FileNotFoundError("no host C++ compiler to build the CUDA emulation")
    lib = Path(out_dir) / "cuda_emu.so"
    cmd = [cxx, "-std=c++20", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           f"-I{REPO / 'cuda'}", f"-I{EMU_DIR}", str(EMU_DIR / "launcher.cpp"), "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    dll = ctypes.CDLL(str(lib))
    vp, i64, u32, u64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64
    for name in all_gather_kernels():
        fn = getattr(dll, f"emu_{name}")
        if "cached" in name:
            fn.argtypes = [u32, u32, vp, vp, vp, vp, vp, i64, i64, i64, u32, vp]
        else:
            fn.argtypes = [u32, u32, vp, vp, vp, i64, i64, i64, u32, vp]
        fn.restype = ctypes.c_int
    dll.emu_gnnsys_gather_int8.argtypes = [u32, u32, vp, vp, vp, vp, i64, i64, i64, u32, vp]
    dll.emu_gnnsys_gather_int8_cached.argtypes = [u32, u32, vp, vp, vp, vp, vp, vp, i64, i64, i64,
                                                  u32, vp]
    for fn in (dll.emu_gnnsys_gather_int8, dll.emu_gnnsys_gather_int8_cached):
        fn.restype = ctypes.c_int
    dll.emu_gnnsys_sample_positions.argtypes = [u32, u32, vp, vp, i64, vp, i64, ctypes.c_int, u64,
                                                vp, vp, i64, vp, vp]
    dll.emu_gnnsys_sample_positions.restype = ctypes.c_int
    for suffix in ("i32", "i64"):
        fn = getattr(dll, f"emu_gnnsys_positions_to_ids_{suffix}")
        fn.argtypes = [u32, u32, vp, vp, i64]
        fn.restype = ctypes.c_int
    dll.emu_allow_read.argtypes = [vp, i64]
    dll.emu_allow_write.argtypes = [vp, i64]
    dll.emu_set_trace.argtypes = [vp, i64]
    dll.emu_trace_count.restype = i64
    return dll


class StandinStream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ops: list[tuple[str, Any]] = []  # ("op", (label, fn)) | ("record", event) | ("wait", event)
        self.done = 0  # ops already run

    def __repr__(self) -> str:
        return f"<stream {self.name}>"


class StandinEvent:
    def __init__(self, rt: "RecordingRuntime", number: int) -> None:
        self.rt = rt
        self.name = f"e{number}"
        self.stream: StandinStream | None = None
        self.done = False

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        with self.rt.lock:
            self.rt.log.append(("synchronize", self.name))
            self.rt._run_until(self)

    def __repr__(self) -> str:
        return f"<event {self.name}>"


class StandinKernels:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.device_index = 0


class RecordingRuntime(CudaRuntime):
    """See the module docstring.

    Args:
        emu: the emulation library (:func:`build_emu_library`) that runs launched kernels.
        attributes: device attributes by ``cudaDeviceAttr`` value (default 1: supported).
        register_error: a CUDA error code ``cudaHostRegister`` fails with (``None``: succeeds).
    """

    name = "standin"

    def __init__(self, emu: ctypes.CDLL | None = None, attributes: dict[int, int] | None = None,
                 register_error: int | None = None, multiprocessors: int = 2) -> None:
        self.emu = emu
        self.attributes = dict(attributes or {})
        self.register_error = register_error
        self._multiprocessors = multiprocessors
        self.lock = threading.RLock()
        self.log: list[tuple] = []
        self.races: list[str] = []
        self.registered: dict[int, tuple[int, int]] = {}  # ptr -> (bytes, flags)
        self._pinned: list[torch.Tensor] = []  # every pinned buffer (kept: their addresses stay valid)
        # device tensors are kept until drained: torch's caching allocator reuses memory freed on
        # a stream only in that stream's order, so work enqueued earlier never sees it reused
        self._device: list[torch.Tensor] = []
        self.compiles: list[str] = []
        self.default = StandinStream("default")
        self._streams = [self.default]
        self._events = 0
        if emu is not None:
            emu.emu_reset()
            emu.emu_allow_read(0, 2**62)  # the emulated GPU may touch any of this process's memory:
            emu.emu_allow_write(0, 2**62)  # the stand-in checks ordering, the kernel tests bounds

    # -- devices
    def require(self, what: str, need_cupy: bool) -> None:
        self.log.append(("require", what))

    def device(self, requested: Any = None) -> torch.device:
        return torch.device("cpu")

    def multiprocessors(self, device) -> int:
        return self._multiprocessors

    def device_attribute(self, attribute: int, device) -> int:
        return int(self.attributes.get(attribute, 1))

    # -- streams and events
    def new_stream(self, device) -> StandinStream:
        with self.lock:
            s = StandinStream(f"side{len(self._streams)}")
            self._streams.append(s)
            self.log.append(("new_stream", s.name))
            return s

    def current_stream(self, device) -> StandinStream:
        return self.default

    def new_event(self) -> StandinEvent:
        with self.lock:
            self._events += 1
            return StandinEvent(self, self._events)

    def record(self, event: StandinEvent, stream: StandinStream) -> None:
        with self.lock:
            event.stream, event.done = stream, False
            stream.ops.append(("record", event))
            self.log.append(("record", event.name, stream.name))

    def wait_event(self, stream: StandinStream, event: StandinEvent) -> None:
        with self.lock:
            stream.ops.append(("wait", event))
            self.log.append(("wait", stream.name, event.name))

    def record_stream(self, tensor, stream: StandinStream) -> None:
        self.log.append(("record_stream", stream.name))

    def synchronize_stream(self, stream: StandinStream) -> None:
        with self.lock:
            self.log.append(("synchronize_stream", stream.name))
            self._run(stream, len(stream.ops))

    def drain(self) -> None:
        """Run everything enqueued on every stream (what a test does before reading results)."""
        with self.lock:
            for s in list(self._streams):
                self._run(s, len(s.ops))
            self._device = []

    # -- memory
    def empty(self, shape, dtype, device, stream) -> torch.Tensor:
        t = torch.empty(tuple(shape), dtype=dtype)
        if t.numel():
            t.view(-1).view(torch.uint8).fill_(0xCD)  # garbage where nothing was written
        with self.lock:
            self._device.append(t)
            self.log.append(("alloc", stream.name, int(t.numel() * t.element_size())))
        return t

    def pinned_empty(self, shape, dtype) -> torch.Tensor:
        t = torch.empty(tuple(shape), dtype=dtype)
        with self.lock:
            self._pinned.append(t)
            self.log.append(("pin", int(t.numel() * t.element_size())))
        return t

    def _is_pinned(self, ptr: int, nbytes: int) -> bool:
        return any(p.data_ptr() <= ptr and ptr + nbytes <= p.data_ptr() + p.numel() * p.element_size()
                   for p in self._pinned)

    def copy(self, dst: torch.Tensor, src: torch.Tensor, stream: StandinStream) -> None:
        nbytes = src.numel() * src.element_size()
        assert dst.numel() * dst.element_size() == nbytes and dst.is_contiguous() and src.is_contiguous()
        d, s = dst.data_ptr(), src.data_ptr()  # raw addresses: a real copy holds no reference
        with self.lock:
            # a pinned host source is final when its copy is enqueued; anything else (device
            # memory) may still be written by work enqueued before the copy
            digest = _digest(s, nbytes) if self._is_pinned(s, nbytes) else None
            copy_id = len(self.log)

            def run() -> None:
                if digest is not None and _digest(s, nbytes) != digest:
                    self.races.append(f"copy #{copy_id} on {stream.name}: its source was written "
                                      "again before the copy ran")
                ctypes.memmove(d, s, nbytes)

            stream.ops.append(("op", (f"copy #{copy_id}", run)))
            self.log.append(("copy", stream.name, nbytes, copy_id))

    def run(self, stream: StandinStream, label: str, fn: Callable[[], None]) -> None:
        with self.lock:
            stream.ops.append(("op", (label, fn)))
            self.log.append(("run", label, stream.name))

    # -- host registration
    def host_register(self, ptr: int, nbytes: int, flags: int) -> None:
        self.log.append(("host_register", ptr, nbytes, flags))
        if self.register_error is not None:
            raise HostRegisterError(f"cudaErrorStandin ({self.register_error})", self.register_error)
        self.registered[ptr] = (nbytes, flags)

    def host_unregister(self, ptr: int) -> None:
        self.log.append(("host_unregister", ptr))
        del self.registered[ptr]

    def device_pointer(self, ptr: int) -> int:
        return ptr  # UVA: the host address

    # -- kernels
    def kernels(self, filename: str, device) -> StandinKernels:
        self.log.append(("compile", filename))
        self.compiles.append(filename)
        return StandinKernels(filename)

    def launch(self, kernels, name, grid, block, args, stream) -> None:
        assert self.emu is not None, "this stand-in has no kernel emulation"
        fn = getattr(self.emu, f"emu_{name}")
        ints = [int(a) for a in args]

        def run() -> None:
            rc = fn(int(grid), int(block), *ints)
            if rc != 0:
                raise RuntimeError(f"emulated kernel {name} failed with CUDA error {rc}")

        with self.lock:
            stream.ops.append(("op", (f"kernel {name}", run)))
            self.log.append(("launch", name, stream.name))

    # -- execution
    def _run(self, stream: StandinStream, upto: int) -> None:
        while stream.done < upto:
            kind, item = stream.ops[stream.done]
            stream.done += 1
            if kind == "op":
                label, fn = item
                self.log.append(("exec", label, stream.name))
                fn()
            elif kind == "record":
                item.done = True
                self.log.append(("complete", item.name))
            elif kind == "wait":
                self._run_until(item)

    def _run_until(self, event: StandinEvent) -> None:
        if event.done or event.stream is None:
            return
        s = event.stream
        upto = next(i for i in range(s.done, len(s.ops)) if s.ops[i] == ("record", event)) + 1
        self._run(s, upto)

    # -- reading the log
    def index(self, entry: tuple, start: int = 0) -> int:
        """Position of the first log entry from ``start`` that begins with ``entry``."""
        for i in range(start, len(self.log)):
            if self.log[i][:len(entry)] == entry:
                return i
        raise AssertionError(f"{entry} not in the log from {start}:\n{self.log[start:start + 60]}")


def _digest(ptr: int, nbytes: int) -> bytes:
    return hashlib.blake2b(ctypes.string_at(ptr, nbytes), digest_size=16).digest()


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().view(torch.uint8).numpy()
