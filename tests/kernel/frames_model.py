"""A Python model of the hybrid frame allocator (kernel/mm/frame.c and frame_stack.c).

The model knows which frames are free in the span half (a set of frame numbers; the spans are its
sorted, coalesced runs) and which runs are stacked (one LIFO list per run length), and from that
predicts every answer of the C code exactly: which run an allocation returns, when the stack folds,
and every counter. It follows the contract in kernel/include/mm/frame.h, not the C source.
"""

from __future__ import annotations

from kmhost import KM_ENOMEM, PAGE, runs

from kmtool.schemas.frames import STACK_RUN_MAX


class FramesModel:
    """The allocator's free frames, split into the two halves. Frame numbers, not addresses."""

    def __init__(self, stack_limit: int) -> None:
        self.span_free: set[int] = set()
        self.stack: list[list[int]] = [[] for _ in range(STACK_RUN_MAX)]  # top of stack last
        self.stack_limit = stack_limit
        self.folds = self.managed = self.allocs = self.frees = 0

    # ---- views ----

    @property
    def stack_frames(self) -> int:
        return sum((i + 1) * len(s) for i, s in enumerate(self.stack))

    @property
    def stack_runs(self) -> int:
        return sum(len(s) for s in self.stack)

    def stacked(self) -> set[int]:
        return {f + i for c, s in enumerate(self.stack) for f in s for i in range(c + 1)}

    def free(self) -> set[int]:
        return self.span_free | self.stacked()

    def spans(self) -> list[tuple[int, int]]:
        """(start address, count) of every span, in list order."""
        return runs(self.span_free)

    def stack_view(self) -> list[list[int]]:
        """Per run length, the stacked runs' addresses from the top down (as Frames.stack())."""
        return [[f * PAGE for f in reversed(s)] for s in self.stack]

    # ---- operations ----

    def fold(self) -> int:
        moved = self.stack_runs
        if moved:
            self.span_free |= self.stacked()
            self.stack = [[] for _ in range(STACK_RUN_MAX)]
            self.folds += 1
        return moved

    def add(self, first: int, count: int) -> None:
        self.fold()
        self.span_free.update(range(first, first + count))
        self.managed += count

    def release(self, first: int, count: int) -> None:
        """frames_free of `count` frames from frame number `first` (the caller owns them)."""
        self.frees += 1
        if count <= STACK_RUN_MAX:
            self.stack[count - 1].append(first)
            if self.stack_frames > self.stack_limit:
                self.fold()
            return
        self.fold()
        self.span_free.update(range(first, first + count))

    def _first_fit(self, want: int) -> tuple[int, int] | None:
        return next(((s // PAGE, c) for s, c in self.spans() if c >= want), None)

    def _take_top(self, start: int, count: int, take: int) -> int:
        first = start + count - take
        self.span_free.difference_update(range(first, first + take))
        self.allocs += 1
        return first

    def take_whole(self, want: int) -> int | None:
        """frames_alloc_contig: the first frame number of `want` frames, or None."""
        if want <= STACK_RUN_MAX and self.stack[want - 1]:
            self.allocs += 1
            return self.stack[want - 1].pop()
        fit = self._first_fit(want)
        if fit is None and self.fold():
            fit = self._first_fit(want)
        return None if fit is None else self._take_top(*fit, want)

    def alloc(self, want: int) -> tuple[int, int] | int:
        """frames_alloc: (address, got) or KM_ENOMEM."""
        first = self.take_whole(want)
        if first is not None:
            return first * PAGE, want
        spans = self.spans()
        if not spans:
            return KM_ENOMEM
        start, count = max(spans, key=lambda s: s[1])  # the first of the largest spans
        return self._take_top(start // PAGE, count, count) * PAGE, count
