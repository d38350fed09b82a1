"""The handle of GPU work (a gather, a batch's copies) that may still be running on a side stream."""

from __future__ import annotations

from typing import Any

import torch


class PendingGather:
    """Tensors produced by work enqueued on a side stream, and the event that marks its end.

    ``wait()`` makes the consumer's stream wait for the event (no host blocking), tells the
    allocator that the consumer's stream uses the tensors (they were allocated on the side
    stream), and returns the main tensor; for CPU placements there is no event and the tensor
    is already complete.

    Args:
        tensor: the result (``[n, D]`` rows for a gather).
        event: the event recorded on the side stream after the work, or ``None``.
        runtime: the :class:`~gnnsys.features.cuda_runtime.CudaRuntime` the work ran on.
        keep: more device tensors the work produced (all made ready by the same event).
    """

    def __init__(self, tensor: torch.Tensor, event: Any = None, runtime: Any = None,
                 keep: tuple[torch.Tensor, ...] = ()):
        self._tensor = tensor
        self._event = event
        self._runtime = runtime
        self._keep = keep
        if event is not None and runtime is None:
            from gnnsys.features.cuda_runtime import default_runtime  # noqa: PLC0415

            self._runtime = default_runtime()

    @property
    def tensor(self) -> torch.Tensor:
        """The result, without waiting (only for work that is itself ordered after ``event``)."""
        return self._tensor

    @property
    def event(self) -> Any:
        return self._event

    def ready(self) -> bool:
        """True when the work has finished (never blocks)."""
        return self._event is None or self._event.query()

    def wait(self, stream: Any = None) -> torch.Tensor:
        """Order ``stream`` (default: the current stream) after the work; return the tensor."""
        if self._event is not None:
            rt = self._runtime
            if stream is None:
                stream = rt.current_stream(self._tensor.device)
            rt.wait_event(stream, self._event)
            # the memory was allocated on the side stream: keep it until `stream` is done with it
            for t in (self._tensor, *self._keep):
                rt.record_stream(t, stream)
        return self._tensor
