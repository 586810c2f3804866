"""kmtool.qemu.dumpfile: the dump writer's bytes against a model, and the shape of its writes.

The point of the BlockWriter is the shape of its writes (whole BLOCK-aligned blocks, zero blocks
never written), so besides the file's bytes the tests record every pwrite it makes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmtool.layout.table import PAGE_SIZE
from kmtool.qemu import dumpfile
from kmtool.qemu.dump import _PipeCopy
from kmtool.qemu.dumpfile import BLOCK

# One step: skip `gap` bytes forward, then write `length` bytes of `fill` (0: zeros).
STEP = st.tuples(
    st.integers(0, 3 * BLOCK),
    st.integers(0, 3 * BLOCK),
    st.sampled_from([0, 0x5A, 0xA5]),
)


class Recorder:
    """Wraps os.pwrite in kmtool.qemu.dumpfile and keeps (offset, length) of every call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[int, int]] = []
        real = os.pwrite

        def pwrite(fd: int, data: memoryview, offset: int) -> int:
            self.writes.append((offset, len(data)))
            return real(fd, data, offset)

        monkeypatch.setattr(dumpfile.os, "pwrite", pwrite)


def assert_block_shaped(writes: list[tuple[int, int]], model: bytearray) -> None:
    """Every write is one whole block at its aligned offset, except a last one that ends the data;
    no block is written twice, and none that holds only zeros."""
    blocks = [offset // BLOCK for offset, _ in writes]
    assert len(blocks) == len(set(blocks)), writes
    for offset, length in writes:
        assert offset % BLOCK == 0, (offset, length)
        assert length == BLOCK or offset + length >= len(model.rstrip(b"\0")), (offset, length)
        assert any(model[offset : offset + length])


def run_steps(path: Path, steps: list[tuple[int, int, int]]) -> bytearray:
    """Carry out `steps` on a new file `path`; return the bytes it must hold (the model)."""
    model = bytearray()
    with dumpfile.create(path) as writer:
        for gap, length, fill in steps:
            model += bytes(gap)
            writer.seek(len(model))
            data = bytes([fill]) * length
            model += data
            writer.write(data)
            assert writer.position == len(model)
        tail = steps[0][0] if steps else 0  # some trailing hole, from the first gap
        writer.finish(len(model) + tail)
        model += bytes(tail)
    return model


def copy_file(source: Path, out: Path) -> int:
    """`source` copied into the new file `out` by a BlockWriter; the bytes copy_from reports."""
    src = os.open(source, os.O_RDONLY)
    try:
        with dumpfile.create(out) as writer:
            copied = writer.copy_from(src)
            writer.finish(writer.position)
    finally:
        os.close(src)
    return copied


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, max_size=6))
def test_bytes_equal_the_model_and_writes_are_block_shaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: list[tuple[int, int, int]]
) -> None:
    recorder = Recorder(monkeypatch)
    path = tmp_path / "dump"
    model = run_steps(path, steps)
    assert path.read_bytes() == model
    assert_block_shaped(recorder.writes, model)


def test_a_whole_block_is_one_write_at_its_aligned_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch)
    # Written in odd pieces that cross block boundaries: still one pwrite per block.
    run_steps(tmp_path / "dump", [(0, 12345, 0x5A), (0, 3 * BLOCK - 12345, 0x5A)])
    assert recorder.writes == [(0, BLOCK), (BLOCK, BLOCK), (2 * BLOCK, BLOCK)]


def test_holes_inside_a_block_are_written_as_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch)
    # Seeks leave each block with its tail a hole and enter the next one 4 KiB or 8 KiB in, as a
    # copy of a sparse file with a record every other page does: still whole aligned blocks.
    model = run_steps(
        tmp_path / "dump",
        [(0, PAGE_SIZE, 0x5A), (BLOCK, PAGE_SIZE, 0x5A), (BLOCK, PAGE_SIZE, 0xA5)],
    )
    assert recorder.writes == [(0, BLOCK), (BLOCK, BLOCK), (2 * BLOCK, 3 * PAGE_SIZE)]
    assert (tmp_path / "dump").read_bytes() == model


def test_zero_blocks_stay_holes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    path = tmp_path / "dump"
    model = run_steps(path, [(0, 4 * BLOCK, 0), (0, BLOCK, 0x5A), (0, 3 * BLOCK, 0)])
    assert recorder.writes == [(4 * BLOCK, BLOCK)]
    assert path.stat().st_size == len(model) == 8 * BLOCK
    assert path.stat().st_blocks * 512 <= 2 * BLOCK  # sparse (ext4, tmpfs, xfs, btrfs)


def test_seek_and_finish_never_go_back(tmp_path: Path) -> None:
    with dumpfile.create(tmp_path / "dump") as writer:
        writer.write(b"\1" * 100)
        with pytest.raises(ValueError, match="behind"):
            writer.seek(99)
        with pytest.raises(ValueError, match="behind"):
            writer.finish(50)


def test_copy_from_a_pipe(tmp_path: Path) -> None:
    data = bytes(BLOCK + 7) + os.urandom(BLOCK // 2) + bytes(2 * BLOCK) + os.urandom(1000)
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as out:
            for at in range(0, len(data), 65536 + 3):  # odd piece sizes
                out.write(data[at : at + 65536 + 3])

    feeder = threading.Thread(target=feed)
    feeder.start()
    path = tmp_path / "dump"
    try:
        with dumpfile.create(path) as writer:
            writer.seek(BLOCK + 5)  # a stream may start inside a block
            assert writer.copy_from(read_end) == len(data)
            writer.finish(writer.position)
    finally:
        os.close(read_end)
        feeder.join()
    assert path.read_bytes() == bytes(BLOCK + 5) + data


def test_copy_from_a_sparse_file_reads_no_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    with open(source, "wb") as f:
        f.truncate(16 * BLOCK)
        f.seek(3 * BLOCK + PAGE_SIZE)
        f.write(b"\x5a" * 2 * PAGE_SIZE)
        f.seek(11 * BLOCK)
        f.write(b"\xa5" * BLOCK)
    reads: list[tuple[int, int]] = []
    real = os.preadv

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        n = real(fd, buffers, offset)
        reads.append((offset, n))
        return n

    monkeypatch.setattr(dumpfile.os, "preadv", preadv)
    out = tmp_path / "out"
    assert copy_file(source, out) == 16 * BLOCK
    assert out.read_bytes() == source.read_bytes()
    # SEEK_DATA granularity is the file system's block: allow whole 4 KiB blocks, never a 2 MiB one.
    data = [(3 * BLOCK, 4 * BLOCK), (11 * BLOCK, 12 * BLOCK)]
    assert reads and all(any(lo <= at and at + n <= hi for lo, hi in data) for at, n in reads)
    assert sum(n for _, n in reads) < 2 * BLOCK


def test_pipe_copy_failure_is_a_sentence_and_closes_the_pipe() -> None:
    read_end, write_end = os.pipe()
    copy = _PipeCopy(read_end, Path("/dev/full"))  # every write: ENOSPC
    copy.start()
    with pytest.raises(BrokenPipeError), os.fdopen(write_end, "wb") as out:
        for _ in range(64):  # the copy closes its end at the first failed block; QEMU gets EPIPE
            out.write(os.urandom(BLOCK))
            out.flush()
    copy.join(10)
    assert not copy.is_alive()
    assert copy.error == "No space left on device"


def test_copy_from_a_file_system_without_seek_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.write_bytes(bytes(BLOCK) + b"\x5a" * 100)
    real = os.lseek

    def lseek(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(22, "Invalid argument")  # EINVAL, as a file system without them says
        return real(fd, pos, how)

    monkeypatch.setattr(dumpfile.os, "lseek", lseek)
    out = tmp_path / "out"
    assert copy_file(source, out) == BLOCK + 100
    assert out.read_bytes() == source.read_bytes()
