"""Coding policy: which candidates are tried, palette order, the smallest stream wins."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pil_kmc import codec, coding, context, encoder, layout, quantize
from pil_kmc.coding import Candidate
from pil_kmc.layout import Header

from .strategies import arrays


def test_smallest_tries_every_candidate_and_reports_its_choice():
    plane = np.tile(np.arange(4, dtype=np.uint8), (16, 8))
    candidates = (
        Candidate(layout.STORED, depth=8),
        Candidate(layout.STORED),
        Candidate(layout.XZ, depth=8),
    )
    method, depth, stream = coding.smallest(plane, 4, candidates)
    assert (method, depth) == (layout.XZ, 8)
    header = Header(32, 16, 3, 4, depth, compression=method)
    assert np.array_equal(codec.decode(stream, header), plane)
    method, depth, _ = coding.smallest(plane, 4, candidates[:2])
    assert (method, depth) == (layout.STORED, 2)  # packed rows are smaller when stored


def test_each_candidate_gives_the_stream_its_coder_gives_alone():
    plane = np.random.default_rng(1).integers(0, 40, (60, 90), dtype=np.uint8)
    candidates = (
        Candidate(layout.XZ, depth=8, extreme=True),
        Candidate(layout.BZIP2),
        Candidate(layout.STRIPS),
        Candidate(layout.CONTEXT),
    )
    alone = [
        codec.compress(codec.pack_rows(plane, 8), layout.XZ, extreme=True),
        codec.compress(codec.pack_rows(plane, 8), layout.BZIP2),
        context.encode_strips(plane, 40),
        context.encode(plane, 40),
    ]
    for candidate, stream in zip(candidates, alone, strict=True):
        assert coding.smallest(plane, 40, (candidate,))[2] == stream
    method, _, stream = coding.smallest(plane, 40, candidates)
    assert len(stream) == min(map(len, alone))


def test_optimize_also_tries_the_whole_plane_in_one_strip():
    plane = np.random.default_rng(2).integers(0, 5, (400, 400), dtype=np.uint8)
    two = coding.smallest(plane, 5, (Candidate(layout.STRIPS),))[2]
    one = coding.smallest(plane, 5, (Candidate(layout.STRIPS, one_strip=True),))[2]
    assert int.from_bytes(two[:4], "big") == 200 and int.from_bytes(one[:4], "big") == 400
    assert one == context.encode_strips(plane, 5, rows=400)
    for pixels in (1000, coding.LARGE + 1):
        tried = coding.plan(pixels, optimize=True).candidates
        assert Candidate(layout.STRIPS, one_strip=True) in tried


def test_policy_by_situation():
    assert [c.method for c in coding.plan(1000).candidates] == [layout.STRIPS, layout.BZIP2]
    large = coding.plan(coding.LARGE + 1)  # decoded fastest
    assert [c.method for c in large.candidates] == [layout.TABLES]
    assert coding.plan(1000, optimize=True).both_orders
    assert coding.plan(1000, compression=layout.ZLIB).candidates == (Candidate(layout.ZLIB),)
    optimize_large = coding.plan(coding.LARGE + 1, optimize=True).candidates
    assert {c.method for c in optimize_large} == set(layout.PLANE_METHODS)


def test_many_colours_are_ordered_by_cooccurrence_and_few_by_brightness():
    rng = np.random.default_rng(12)
    a = np.repeat(np.repeat(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), 4, 0), 4, 1)
    result, _ = encoder.quantize_image(Image.fromarray(a), encoder.save_options({"clusters": 64}))
    coded = coding.code(result)
    brightness = coding.palette_order(result.palette)
    order = coding.cooccurrence_order(result.indices, result.k, ties=brightness)
    assert np.array_equal(coded.palette, result.palette[order])
    assert np.array_equal(coded.palette[coded.indices], result.palette[result.indices])
    assert all(map(np.array_equal, coding.ordered(result), (coded.palette, coded.indices)))
    kept = coding.code(result, given=True)
    assert np.array_equal(kept.palette, result.palette)
    few, _ = encoder.quantize_image(Image.fromarray(a), encoder.save_options({"clusters": 16}))
    by_brightness = few.palette[coding.palette_order(few.palette)]
    assert np.array_equal(coding.code(few).palette, by_brightness)
    assert np.array_equal(coding.ordered(few)[0], by_brightness)


def test_a_forced_method_keeps_the_brightness_order_of_many_colours():
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    result = quantize.Quantized(palette, rng.integers(0, 40, (30, 30), dtype=np.uint8))
    coded = coding.code(result, compression=layout.ZLIB)
    assert np.array_equal(coded.palette, palette[coding.palette_order(palette)])


def test_the_users_own_order_is_changed_by_optimize_only():
    rng = np.random.default_rng(6)
    for k in (8, 40):
        palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
        own = quantize.Quantized(
            palette, rng.integers(0, k, (30, 30), dtype=np.uint8), user_order=True
        )
        assert np.array_equal(coding.code(own).palette, palette)
        assert coding.ordered(own)[0] is palette
        tried = coding.orders(own, coding.plan(900, optimize=True), optimize=True)
        assert tried[0][0] is palette and len(tried) == 2
        kept = coding.orders(own, coding.plan(900, optimize=True), optimize=True, given=True)
        assert len(kept) == 1 and kept[0][0] is palette


def test_forced_compression_is_used_as_it_is():
    plane = np.random.default_rng(3).integers(0, 9, (20, 30), dtype=np.uint8)
    result = quantize.Quantized(np.arange(27, dtype=np.uint8).reshape(9, 3), plane)
    for method in layout.COMPRESSION_NAMES:
        coded = coding.code(result, compression=method)
        assert coded.method == method and coded.indices is plane


@given(st.integers(1, 4).flatmap(lambda c: arrays(c, max_colours=30)))
def test_cooccurrence_order_is_a_permutation_and_reorder_keeps_the_image(a):
    q = quantize.quantize(a, 256)
    order = coding.cooccurrence_order(q.indices, q.k)
    assert sorted(order.tolist()) == list(range(q.k))
    palette, indices = coding.reorder(q.palette, q.indices, order)
    assert np.array_equal(palette[indices], q.palette[q.indices])


def test_cooccurrence_order_puts_touching_entries_side_by_side():
    # Only entries 0 and 2 occur, always side by side; 1 and 3 are unused.
    q = quantize.Quantized(
        np.arange(4, dtype=np.uint8)[:, None] * 60,
        np.array([[0, 2, 0, 2], [1, 3, 1, 3]] * 3, np.uint8)[::2],
    )
    order = coding.cooccurrence_order(q.indices, q.k).tolist()
    assert abs(order.index(0) - order.index(2)) == 1


@given(st.integers(1, 4).flatmap(lambda c: arrays(c, max_colours=30)), st.randoms())
def test_cooccurrence_ties_go_by_the_order_given(a, random):
    q = quantize.quantize(a, 256)
    ties = np.array(random.sample(range(q.k), q.k))
    _, in_that_order = coding.reorder(q.palette, q.indices, ties)
    expected = ties[coding.cooccurrence_order(in_that_order, q.k)]
    assert np.array_equal(coding.cooccurrence_order(q.indices, q.k, ties=ties), expected)


def test_cooccurrence_ties_go_to_the_entry_earlier_in_the_given_order():
    # Every entry occurs once and 2 touches both others once: the chain
    # starts at the first of the tied entries and grows from it.
    indices = np.array([[0, 2, 1]], np.uint8)
    assert coding.cooccurrence_order(indices, 3).tolist() == [0, 2, 1]
    assert coding.cooccurrence_order(indices, 3, ties=np.array([1, 0, 2])).tolist() == [1, 2, 0]


def test_cooccurrence_order_is_the_same_counted_in_blocks_of_rows(monkeypatch):
    rng = np.random.default_rng(9)
    indices = np.kron(rng.integers(0, 30, (12, 9)), np.ones((5, 7), np.int64)).astype(np.uint8)
    whole = coding.cooccurrence_order(indices, 30)
    monkeypatch.setattr(coding, "_TOUCH_BLOCK_PIXELS", 2 * indices.shape[1] + 1)
    assert np.array_equal(coding.cooccurrence_order(indices, 30), whole)


def repeating_plane(seed: int = 0) -> np.ndarray:
    """A plane of one random 8 x 40 block repeated here and there, like lines of text."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 16, (8, 40), dtype=np.uint8)
    plane = np.zeros((200, 400), np.uint8)
    for y in range(0, 200, 8):
        for x in range(0, 400, 40):
            if rng.random() < 0.6:
                plane[y : y + 8, x : x + 40] = np.roll(block, int(rng.integers(0, 3)), axis=1)
    return plane


def sixteen_colours() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (16, 3), dtype=np.uint8)


def methods_compressed(plane: np.ndarray, compress=codec.compress, **options) -> tuple[int, set]:
    """The method :func:`coding.code` chooses, and every packed-row method it ran.

    ``compress`` stands in for :func:`codec.compress` while it runs.
    """
    with mock.patch.object(codec, "compress", side_effect=compress) as spy:
        coded = coding.code(quantize.Quantized(sixteen_colours(), plane), **options)
    return coded.method, {call.args[1] for call in spy.call_args_list}


def test_xz_is_tried_where_bzip2_beats_the_context_coders_and_kept_if_smaller():
    plane = repeating_plane()
    for optimize in (False, True):
        method, ran = methods_compressed(plane, optimize=optimize)
        assert layout.XZ in ran and method == layout.XZ
    xz = coding.smallest(plane, 16, (Candidate(layout.XZ),))[2]
    bzip2 = coding.smallest(plane, 16, (Candidate(layout.BZIP2),))[2]
    assert len(xz) < len(bzip2)


def test_xz_is_not_tried_where_a_context_coder_wins():
    # Smooth areas with noisy edges, as a photograph's plane: the context coders win.
    y, x = np.mgrid[:200, :300]
    noise = np.random.default_rng(2).integers(0, 2, (200, 300))
    plane = ((x // 19 + y // 23 + noise) % 16).astype(np.uint8)
    method, ran = methods_compressed(plane)
    assert method == layout.STRIPS and ran == {layout.BZIP2}


def test_an_image_stored_by_xz_opens_as_it_was_saved(tmp_path):
    im = Image.fromarray(sixteen_colours()[repeating_plane(3)])
    im.save(tmp_path / "text.kmc", clusters=16)
    with open(tmp_path / "text.kmc", "rb") as f:
        assert layout.read(f, index=False).header.compression == layout.XZ
    with Image.open(tmp_path / "text.kmc") as back:
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(im))


def test_xz_is_not_kept_where_it_is_larger_than_bzip2():
    real = codec.compress

    def worse_xz(data, method, **options):
        stream = real(data, method, **options)
        return stream + bytes(100_000) if method == layout.XZ else stream

    method, ran = methods_compressed(repeating_plane(), compress=worse_xz)
    assert layout.XZ in ran and method == layout.BZIP2
