"""One frame stack's links, followed through a dump (docs/design.md §14): from the top run's first
frame along `FrameStack.next`, at most a budget of runs (stack_runs, itself at most the dump's
frames), each link checked to name a frame aligned address whose whole frame is in the dump.
kmtool.dump.frame_stack verifies the runs it returns (markers, run and count fields).

A stack is not sorted: it is last in, first out, so after a churn its runs lie anywhere in any
order, and the span chase's guess that a list ascends (kmtool.dump.chase) does not apply. What every
stacked run does carry is its free marker, at a known place in its first frame. So when the stack is
deep against the dump (`stack_index`), the guess is made window by window (SCAN_WINDOW_SHIFT bytes
of physical address space, aligned): one vectorised pass reads the node (marker, run, count, next)
of every frame of the window and keeps the frames whose marker and run field name that frame
itself, the first frames of stacked runs. The windows scanned are those of the stack heads and,
until none is left, every window a guessed node's `next` lands in, so every guessed link either
names a guessed node or leaves the guess (0, outside the dump, a frame without a marker); a
window the walk reaches by an unguessed node is scanned then. A table per window maps each frame
to its guessed node, so linking every guessed node to its successor is one array lookup.

The walk follows guessed nodes through that successor array without a Python step per node
(`_follow`: every JUMP-th node at C speed, the ones between in array steps), and reads every node
that is not guessed exactly from the dump, as it reads the link leaving it. The guess decides only
how a node is read, never what the walk finds: a guessed node's `next` is the very word the exact
read returns, guessed nodes pass every link check by construction, and the budget is counted node
by node, so runs and error are those of the node-by-node walk (tests/dump/test_stack_chase.py
checks it against one). Memory stays bounded: each window is unmapped after its scan; what is kept
is four words per guessed node and a table of 4 bytes per frame of each scanned window.
"""

from __future__ import annotations

from array import array
from itertools import islice
from typing import NamedTuple

import numpy as np

from kmtool.dump.memory import WORD, PhysicalMemory
from kmtool.dump.records import field_offset
from kmtool.layout.table import PAGE_SHIFT, PAGE_SIZE
from kmtool.schemas.frames import FRAME_STACK_MAGIC, STACK_NODE_COLOURS, FrameStack

MARKER, RUN, COUNT, NEXT = (field_offset(FrameStack, f) // WORD
                            for f in ("marker", "run", "count", "next"))  # fmt: skip
NODE_WORDS = FrameStack.sizeof() // WORD
COLOUR_BYTES = 64  # bytes between the nodes of neighbouring frames (stack_node_offset)
COLOUR_WORDS = COLOUR_BYTES // WORD
SCAN_WINDOW_SHIFT = 24  # a scan window: 16 MiB of physical address space, aligned
SCAN_MIN_RUNS = 4096  # below this many stacked runs the walk goes node by node
SCAN_PAGES_PER_RUN = 32  # ... and also when the dump has more frames than this per stacked run
SCAN_MAX_PAGES = 1 << 22  # frames (16 GiB) a dump may have for the guess
JUMP = 16  # a power of two: the guessed path is found every JUMP-th node (_follow)
FOLLOW_JUMPS = 4  # _follow only a guessed path of more than this many JUMPs; read shorter exactly
SCAN_MAX_WINDOWS = 1 << 16  # windows from the lowest offered frame to the highest (1 TiB)
SCAN_SLACK = 4096  # frames with a marker beyond the budget before the guess is given up


class Walk(NamedTuple):
    """One stack's walk: its runs' first frames in stack order, for each the index of its guessed
    node in the StackIndex (-1: read exactly), and what stopped the walk early ("" at the bottom)."""

    runs: np.ndarray  # uint64
    guessed: np.ndarray  # int64
    error: str


class StackIndex:
    """The guess (module doc): the guessed nodes, numbered from 1 in scan order, with their address,
    `count` and `next` words and `succ` (the number of the guessed node `next` names, 0: none).

    Windows are physical: window v holds the frames of [v << shift, (v + 1) << shift) that the
    scan is offered (wholly in the file part of a page aligned range), whichever ranges they are
    in. `rows` maps each window from the lowest offered one to its row of `table` (row 0: no
    offered frame, never guessed); table[row * window_frames + f] is the number of the guessed
    node in frame f of the window, or 0 (zero pages until a window is scanned)."""

    def __init__(self, memory: PhysicalMemory, key: int, limit: int, shift: int) -> None:
        self.memory, self.marker_key, self.limit, self.shift = (
            memory,
            FRAME_STACK_MAGIC ^ key,
            limit,
            shift,
        )
        self.window_frames = 1 << (shift - PAGE_SHIFT)
        offered = _offered(memory)
        self.first, last = _window_span(offered, shift)
        self.rows = np.zeros(last - self.first + 2, dtype=np.int64)  # + 1: "outside", row 0
        self.pieces: list[list[tuple[int, int, int]]] = [[]]  # per row: (range, lo, hi) scanned
        for i, lo, hi in offered:
            for v in range(lo >> shift, (hi - 1 >> shift) + 1):
                if not self.rows[v - self.first]:
                    self.rows[v - self.first] = len(self.pieces)
                    self.pieces.append([])
                w_lo, w_hi = max(lo, v << shift), min(hi, v + 1 << shift)
                self.pieces[int(self.rows[v - self.first])].append((i, w_lo, w_hi))
        self.scanned = np.zeros(len(self.pieces), dtype=bool)
        self.scanned[0] = True
        self.table = np.zeros(len(self.pieces) * self.window_frames, dtype=np.int32)
        self.succ = np.zeros(1, dtype=np.int32)  # succ[0] = 0: "none" stays none
        self._jumps = array("i", [0])  # each node's JUMP-th successor, as far as `succ` goes
        self.parts: list[np.ndarray] = []  # (NODE_WORDS, nodes) words, in number order
        self.found = 0
        self.enabled = True
        self._nodes = np.zeros((NODE_WORDS, 0), dtype=np.uint64)
        self._rows, self._scanned, self._table = self.rows.data, self.scanned.data, self.table.data

    @property
    def nodes(self) -> np.ndarray:
        """(NODE_WORDS, found) uint64: the FrameStack words of guessed node k + 1 in column k (its
        `run` is its own address)."""
        if self._nodes.shape[1] != self.found:  # each word a contiguous row, for fast gathers
            self._nodes = np.concatenate([self._nodes, *self.parts], axis=1)
            self.parts = []
        return self._nodes

    def rows_of(self, pas: np.ndarray) -> np.ndarray:
        """The table row of the window of each physical address in `pas` (uint64); 0 outside."""
        v = (pas >> np.uint64(self.shift)).astype(np.int64) - self.first
        return self.rows[np.clip(v, -1, len(self.rows) - 1, out=v)]  # -1: the last, "outside"

    def numbers(self, pas: np.ndarray) -> np.ndarray:
        """The number of the guessed node at each physical address in `pas` (uint64), 0 where
        none is (not a frame address, or a frame not guessed)."""
        frame = (pas >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        v = (frame >> (self.shift - PAGE_SHIFT)) - self.first
        slot = self.rows[np.clip(v, -1, len(self.rows) - 1, out=v)] * self.window_frames
        slot += frame & (self.window_frames - 1)
        found = self.table[slot]
        found[pas % np.uint64(PAGE_SIZE) != 0] = 0
        return found

    def lookup(self, a: int) -> int:
        """The number of the guessed node at frame `a` (frame aligned), scanning its window first
        when no guessed link led there; 0 when it is not guessed. Plain integers over memoryviews
        of `rows`, `scanned` and `table` (fixed once made): the walk asks this for every node it
        reads exactly, so a dump whose markers are all overwritten (or a wrong stack_key) costs
        about what the node-by-node walk costs, not a numpy call per node."""
        v = (a >> self.shift) - self.first
        row = self._rows[v] if self.enabled and 0 <= v < len(self._rows) else 0
        if not row:
            return 0
        if not self._scanned[row]:
            self.extend(np.array([row]))
            if not self.enabled:
                return 0
        return self._table[row * self.window_frames + (a >> PAGE_SHIFT) % self.window_frames]

    def extend(self, rows: np.ndarray) -> None:
        """Scan the windows of table `rows` and, until none is left, every unscanned window a new
        guessed node links into; then link the new nodes. More guessed nodes than `limit` give the
        guess up (`enabled` False: the walk goes on node by node)."""
        first = self.found
        queue = np.unique(rows[~self.scanned[rows]]).tolist()
        self.scanned[queue] = True
        while queue:
            nexts = np.concatenate([self._scan(row) for row in queue])
            if self.found > self.limit:
                self.enabled = False
                return
            reached = np.zeros(len(self.scanned), dtype=bool)
            reached[self.rows_of(nexts)] = True
            queue = np.flatnonzero(reached & ~self.scanned).tolist()
            self.scanned[queue] = True
        self.succ = np.concatenate([self.succ, self.numbers(self.nodes[NEXT, first:])])

    def jumps(self) -> tuple[np.ndarray, array[int]]:
        """`succ`, and each node's JUMP-th successor (0 past the end), as machine integers. Only
        nodes new since the last call are worked out: an older node's successors are all older
        (`extend` scans every window a guessed link lands in before it links them), so a few new
        nodes cost JUMP array steps each, however often the walk's scans add nodes."""
        far = self._jumps
        if len(far) < len(self.succ):
            fresh = len(self.succ) - len(far)
            if fresh * (JUMP - 1) < len(self.succ) * (JUMP.bit_length() - 1):
                new = self.succ[len(far) :]  # few new nodes: JUMP - 1 steps over them alone
                for _ in range(JUMP - 1):
                    new = self.succ[new]
                far.frombytes(new.astype(np.int32).tobytes())
            else:  # many: square the whole successor array (log2 JUMP steps over all)
                new = self.succ
                for _ in range(JUMP.bit_length() - 1):
                    new = new[new]
                far = self._jumps = array("i", new.astype(np.int32).tobytes())
        return self.succ, far

    def long_path(self, k: int) -> bool:
        """Does guessed node `k` start a path of more than FOLLOW_JUMPS * JUMP guessed nodes?
        Shorter ones are read exactly: _follow's array set-up costs about as much as reading a
        few dozen nodes one by one, so a dump whose markers are overwritten every few nodes
        stays within a small factor of the node-by-node walk."""
        far = self.jumps()[1]
        for _ in range(FOLLOW_JUMPS):
            k = far[k]
            if not k:
                return False
        return True

    def _scan(self, row: int) -> np.ndarray:
        """Guess the stacked runs of window `row`: number them, fill its table; their `next`s."""
        out = []
        for i, lo, hi in self.pieces[row]:
            start = self.memory.ranges[i].start
            self.memory.populate(i, lo, hi)
            words = _frame_nodes(self.memory.range_words(i), start, lo, hi)
            self.memory.release_range(i, lo, hi)
            phys = np.arange(lo, hi, PAGE_SIZE, dtype=np.uint64)
            own = words[:, RUN] == phys
            own &= words[:, MARKER] == phys ^ np.uint64(self.marker_key)
            found = np.flatnonzero(own)
            if not len(found):
                continue
            nodes = np.ascontiguousarray(words[found].T)
            base = row * self.window_frames + (lo >> PAGE_SHIFT) % self.window_frames
            self.table[found + base] = np.arange(
                self.found + 1, self.found + len(found) + 1, dtype=np.int32
            )
            self.parts.append(nodes)
            self.found += len(found)
            out.append(nodes[NEXT])
        if len(out) == 1:
            return out[0]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def _frame_nodes(words: np.ndarray, start: int, lo: int, hi: int) -> np.ndarray:
    """The node words of every frame in physical [lo, hi) (frame aligned, whole frames in the
    file) of a range whose words are `words` and whose first byte is physical `start` (page
    aligned): a (frames, NODE_WORDS) uint64 copy. Frames whose numbers run through a whole cycle of
    colours have their nodes equally spaced (a page and one colour apart), so those are copied with
    one strided view; the frames around them are gathered one index each."""
    colours = STACK_NODE_COLOURS
    f_lo, f_hi = lo >> PAGE_SHIFT, hi >> PAGE_SHIFT
    b_lo = min(-(-f_lo // colours) * colours, f_hi)
    b_hi = max(b_lo, f_hi // colours * colours)
    parts = [_gathered(words, start, f_lo, b_lo)] if b_lo > f_lo else []
    if b_hi > b_lo:
        body = np.ndarray(
            ((b_hi - b_lo) // colours, colours),
            dtype=f"V{NODE_WORDS * WORD}",
            buffer=words,
            offset=(b_lo << PAGE_SHIFT) - start,
            strides=(colours * PAGE_SIZE, PAGE_SIZE + COLOUR_BYTES),
        )
        parts.append(body.copy().view("<u8").reshape(-1, NODE_WORDS))
    if f_hi > b_hi:
        parts.append(_gathered(words, start, b_hi, f_hi))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _gathered(words: np.ndarray, start: int, f_lo: int, f_hi: int) -> np.ndarray:
    """`_frame_nodes` for frame numbers [f_lo, f_hi), one fancy index per frame."""
    f = np.arange(f_lo, f_hi, dtype=np.int64)
    at = ((f << PAGE_SHIFT) - start + f % STACK_NODE_COLOURS * COLOUR_BYTES) // WORD
    return words[at[:, None] + np.arange(NODE_WORDS)]


def _offered(memory: PhysicalMemory) -> list[tuple[int, int, int]]:
    """(range, start, end) of the frames the scan is offered: the whole frames in the file part of
    each page aligned range."""
    return [(i, r.start, r.start + r.file_size // PAGE_SIZE * PAGE_SIZE)
            for i, r in enumerate(memory.ranges)
            if r.start % PAGE_SIZE == 0 and r.file_size >= PAGE_SIZE]  # fmt: skip


def _window_span(offered: list[tuple[int, int, int]], shift: int) -> tuple[int, int]:
    """The lowest and the highest window holding an offered frame (0, -1: none)."""
    first = min((lo >> shift for _, lo, _ in offered), default=0)
    return first, max((hi - 1 >> shift for _, _, hi in offered), default=-1)


def stack_index(
    memory: PhysicalMemory, key: int, budget: int, heads: list[int]
) -> StackIndex | None:
    """The guess for stacks of `budget` runs in all under marker key `key`, from the stacks' top
    runs `heads`; None when a walk node by node is cheaper (few runs, or a dump of many frames per
    run, or larger than SCAN_MAX_PAGES) or when more frames carry a marker than the budget allows
    (then the walk goes node by node)."""
    offered = _offered(memory)
    pages = sum(hi - lo for _, lo, hi in offered) // PAGE_SIZE
    first, last = _window_span(offered, SCAN_WINDOW_SHIFT)
    if budget < SCAN_MIN_RUNS or pages > SCAN_MAX_PAGES or budget * SCAN_PAGES_PER_RUN < pages:
        return None
    if last - first >= SCAN_MAX_WINDOWS:  # the window map would be large: ranges far apart
        return None
    index = StackIndex(memory, key, budget + SCAN_SLACK, SCAN_WINDOW_SHIFT)
    index.extend(index.rows_of(np.array(heads, dtype=np.uint64)))
    return index if index.enabled else None


def stack_links(
    memory: PhysicalMemory, head: int, budget: int, index: StackIndex | None = None
) -> Walk:
    """Follow one stack's `next` words from `head`, at most `budget` runs (see `Walk`). A link
    stops it when its frame is not wholly in the dump, when it is not frame aligned, or when the
    budget is spent (a loop, or more runs than stack_runs). `index` (from `stack_index`) only
    speeds the walk up (module doc)."""
    exact: list[int] = []
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    n, last = 0, 0  # runs so far, and the last one (0: none yet)
    views: dict[int, memoryview] = {}
    a, lo, hi, base, view = head, 1, 0, 0, memoryview(b"").cast("Q")
    error = ""
    while a:
        if not lo <= a <= hi:
            i = memory.range_index(a)
            r = memory.ranges[i] if i >= 0 else None
            if r is None or r.start % WORD or a > r.file_end - PAGE_SIZE:
                error = f"Stacked run {hex(a)} (linked from {_origin(last)}) is outside the dump."
                break
            if i not in views:
                views[i] = memory.word_view(i)
            lo, hi, base, view = r.start, r.file_end - PAGE_SIZE, r.start, views[i]
        if a % PAGE_SIZE or n >= budget:
            why = "is not frame aligned" if a % PAGE_SIZE else "closes a loop or passes stack_runs"
            error = f"Stacked run {hex(a)} (linked from {_origin(last)}) {why}."
            break
        k = index.lookup(a) if index is not None else 0
        if k and index is not None and index.long_path(k):
            _flush(exact, parts)
            path = _follow(index, k, budget - n)
            parts.append((np.zeros(0, np.uint64), path))
            n += len(path)
            last, a = int(index.nodes[RUN, path[-1]]), int(index.nodes[NEXT, path[-1]])
            continue
        exact.append(a)
        n, last = n + 1, a
        a = view[(a - base >> 3) + (a >> PAGE_SHIFT) % STACK_NODE_COLOURS * COLOUR_WORDS + NEXT]
    _flush(exact, parts)
    return _joined(parts, index, error)


def _follow(index: StackIndex, k: int, budget: int) -> np.ndarray:
    """Guessed node `k` and the guessed nodes it links to, at most `budget` in all: their columns in
    `index.nodes` (int64), in walk order.

    Every JUMP-th node of the path is found first: a list extended from a `map` over itself reads
    the JUMP-th successor (`index.jumps`) of each number it holds, until that is 0 (dropped by
    `filter`, which ends the list: the path ends within the last JUMP nodes) or islice's count is
    reached. The nodes between follow in JUMP - 1 array steps over all of those at once, and the
    zeros past the path's end (succ[0] is 0) are cut off."""
    succ, jump = index.jumps()
    heads = [k]
    heads.extend(islice(filter(None, map(jump.__getitem__, heads)), (budget - 1) // JUMP))
    column = np.array(heads, dtype=np.int64)
    columns = [column]
    for _ in range(JUMP - 1):
        column = succ[column]
        columns.append(column)
    path = np.stack(columns, axis=1).ravel()[:budget]
    end = np.flatnonzero(path[-JUMP:] == 0)
    if len(end):
        path = path[: len(path) - min(JUMP, len(path)) + int(end[0])]
    return path - 1


def _flush(exact: list[int], parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Move the exactly read runs so far into `parts`."""
    if exact:
        parts.append((np.array(exact, dtype=np.uint64), np.zeros(0, np.int64)))
        exact.clear()


def _joined(
    parts: list[tuple[np.ndarray, np.ndarray]], index: StackIndex | None, error: str
) -> Walk:
    """The walk's parts (exact runs, or rows of guessed nodes) as one Walk."""
    if not parts:
        return Walk(np.zeros(0, np.uint64), np.zeros(0, np.int64), error)
    runs, guessed = [], []
    for exact, rows in parts:
        if len(exact):
            runs.append(exact)
            guessed.append(np.full(len(exact), -1, dtype=np.int64))
        elif index is not None:
            runs.append(index.nodes[RUN][rows])
            guessed.append(rows)
    if len(runs) == 1:
        return Walk(runs[0], guessed[0], error)
    return Walk(np.concatenate(runs), np.concatenate(guessed), error)


def _origin(last: int) -> str:
    return hex(last) if last else "the stack head"
