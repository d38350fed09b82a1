"""The handle of a gather that may still be running on a CUDA side stream."""

from __future__ import annotations

import torch


class PendingGather:
    """A gather enqueued on a side stream.

    ``wait()`` makes the consumer's stream wait for the gather's event (no host blocking) and
    returns the tensor; for CPU placements the tensor is already complete.
    """

    def __init__(self, tensor: torch.Tensor, event: torch.cuda.Event | None = None):
        self._tensor = tensor
        self._event = event

    def ready(self) -> bool:
        """True when the gather has finished (never blocks)."""
        return self._event is None or self._event.query()

    def wait(self, stream: torch.cuda.Stream | None = None) -> torch.Tensor:
        """Order ``stream`` (default: the current stream) after the gather; return the tensor."""
        if self._event is not None:
            if stream is None:
                stream = torch.cuda.current_stream(self._tensor.device)
            stream.wait_event(self._event)
            # the memory was allocated on the side stream: keep it until `stream` is done with it
            self._tensor.record_stream(stream)
        return self._tensor
