"""Compression method 4, ``context``: wavefront order, adaptive counts, rANS stream."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import codec, context, layout
from pil_kmc.layout import FormatError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rocket.jpg"


@st.composite
def planes(draw):
    """Index planes from noise to large flat areas, so every question gets asked."""
    w, h = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    k = draw(st.integers(1, 256))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    block = draw(st.integers(1, 8))
    coarse = rng.integers(0, k, (-(-h // block), -(-w // block)))
    plane = np.kron(coarse, np.ones((block, block), np.int64))[:h, :w]
    noise = rng.random((h, w)) < draw(st.floats(0, 1))
    plane[noise] = rng.integers(0, k, int(noise.sum()))
    return plane.astype(np.uint8), k


@given(planes())
def test_round_trip(plane):
    indices, k = plane
    h, w = indices.shape
    stream = context.encode(indices, k)
    assert np.array_equal(context.decode(stream, w, h, k), indices)
    assert context.encode(indices, k) == stream  # deterministic


@given(st.integers(1, 40), st.integers(1, 40))
def test_wavefront_order_is_by_step_then_row_and_steps_use_distinct_lanes(w, h):
    order, steps, rows = context._wavefront_order(w, h)
    y, x = np.divmod(np.arange(w * h), w)
    assert np.array_equal(order, np.lexsort((y, x + 2 * y)))
    assert np.array_equal(steps, (x + 2 * y)[order]) and np.array_equal(rows, y[order])
    lanes = rows % context.lanes_for(w, h)
    for t in np.unique(steps):
        assert len(set(lanes[steps == t])) == np.count_nonzero(steps == t)


def test_each_step_needs_only_earlier_steps():
    # left (x-1, y), up (x, y-1), up-left and up-right are all on earlier steps of x + 2y.
    for dx, dy in [(-1, 0), (0, -1), (-1, -1), (1, -1)]:
        assert dx + 2 * dy < 0


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.booleans()), max_size=60))
def test_counts_before_count_only_earlier_steps_of_the_same_context(events):
    events.sort(key=lambda e: e[1])  # questions arrive in step order
    ctx = np.array([e[0] for e in events], np.int32)
    step = np.array([e[1] for e in events], np.int32)
    yes = np.array([e[2] for e in events], bool)
    zeros, total = context._counts_before(ctx, step, yes)
    for i, (c, t, _) in enumerate(events):
        earlier = [e for e in events if e[0] == c and e[1] < t]
        assert total[i] == len(earlier)
        assert zeros[i] == sum(not e[2] for e in earlier)


def test_probability_starts_even_and_follows_the_counts():
    p0 = context._probability_of_zero(np.array([0, 10, 0, 10**6]), np.array([0, 10, 10, 10**6]))
    assert p0.tolist()[0] == 2048
    assert p0[1] > 3900 and p0[2] < 200
    assert p0[3] == 4095  # never certain: every answer stays codable


def test_literal_bits_and_lanes():
    assert [context.literal_bits(k) for k in (1, 2, 3, 16, 17, 100, 256)] == [1, 1, 2, 4, 5, 7, 8]
    assert context.lanes_for(1, 1) == 1 and context.lanes_for(512, 512) == 256
    assert context.lanes_for(1000, 3) == 3


def test_flat_plane_costs_almost_nothing_but_the_lane_states():
    stream = context.encode(np.full((64, 64), 5, np.uint8), 9)
    assert len(stream) <= 4 * context.lanes_for(64, 64) + 40


def test_stream_starts_with_one_state_per_lane():
    indices = np.arange(60, dtype=np.uint8).reshape(6, 10) % 7
    stream = context.encode(indices, 7)
    states = np.frombuffer(stream[: 4 * 5], ">u4")
    assert context.lanes_for(10, 6) == 5 and (states >= 1 << 16).all()
    assert (len(stream) - 20) % 2 == 0


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(3)
    indices = np.kron(rng.integers(0, 50, (8, 10)), np.ones((4, 4), np.int64)).astype(np.uint8)
    indices[rng.random(indices.shape) < 0.2] = 7
    return indices, context.encode(indices, 50)


def test_truncated_stream_is_refused(sample):
    indices, stream = sample
    h, w = indices.shape
    for end in (0, 3, 4 * context.lanes_for(w, h), len(stream) - 2):
        with pytest.raises(FormatError, match="truncated"):
            context.decode(stream[:end], w, h, 50)


def test_truncated_stream_decodes_the_completed_rows_with_partial(sample):
    indices, stream = sample
    h, w = indices.shape
    out = context.decode(stream[: len(stream) * 2 // 3], w, h, 50, partial=True)
    done = np.flatnonzero((out == indices).all(axis=1) & (np.arange(h) < h - 1))
    assert len(done) > 0 and np.array_equal(out[: done[-1] + 1], indices[: done[-1] + 1])
    assert (out[np.flatnonzero(~(out == indices).all(axis=1))] == 0).all()


def test_extra_words_are_refused(sample):
    indices, stream = sample
    with pytest.raises(FormatError, match="more data"):
        context.decode(stream + b"\0\0", indices.shape[1], indices.shape[0], 50)


def test_odd_length_and_low_states_are_refused(sample):
    indices, stream = sample
    h, w = indices.shape
    with pytest.raises(FormatError):
        context.decode(stream + b"\0", w, h, 50)
    with pytest.raises(FormatError, match="below"):
        context.decode(bytes(4) + stream[4:], w, h, 50)


def test_changed_words_are_detected(sample):
    indices, stream = sample
    h, w = indices.shape
    changed = 0
    for pos in range(4 * context.lanes_for(w, h), len(stream), 7):
        edited = bytearray(stream)
        edited[pos] ^= 0x10
        try:
            out = context.decode(bytes(edited), w, h, 50)
        except FormatError:
            changed += 1
        else:
            changed += not np.array_equal(out, indices)
    assert changed == len(range(4 * context.lanes_for(w, h), len(stream), 7))


def test_index_at_or_above_k_is_refused():
    indices = np.array([[0, 99, 120, 127]], np.uint8)  # 7 literal bits for k = 128 or 100
    stream = context.encode(indices, 128)
    with pytest.raises(FormatError, match="at or above k=100"):
        context.decode(stream, 4, 1, 100)


def test_file_with_context_records_version_1_1_and_others_1_0():
    im = Image.new("P", (9, 7))
    for compression, version in [("context", (1, 1)), ("xz", (1, 0))]:
        buffer = io.BytesIO()
        im.save(buffer, "KMC", compression=compression)
        header = layout.read_head(io.BytesIO(buffer.getvalue())).header
        assert header.version == version
        assert layout.COMPRESSION_NAMES[header.compression] == compression


def test_beats_xz_and_bzip2_on_a_photograph():
    with Image.open(EXAMPLE) as im:
        small = im.convert("RGB").reduce(4)
    buffer = io.BytesIO()
    small.save(buffer, "KMC", clusters=64)
    indices = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    others = [
        len(codec.compress(codec.pack_rows(indices, 8), m)) for m in (layout.XZ, layout.BZIP2)
    ]
    assert len(context.encode(indices, 64)) < 0.95 * min(others)


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 256), st.binary(max_size=300))
def test_arbitrary_streams_decode_or_raise_format_error(w, h, k, stream):
    try:
        out = context.decode(stream, w, h, k)
    except FormatError:
        return
    assert out.shape == (h, w) and int(out.max()) < k


def test_encoding_in_slices_of_steps_gives_the_same_stream(monkeypatch, sample):
    indices, stream = sample
    monkeypatch.setattr(context, "_SLICE", 7)  # many slices, cut at step boundaries
    assert context.encode(indices, 50) == stream
