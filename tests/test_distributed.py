"""Many images on a real dask.distributed LocalCluster (2 worker processes): same bytes as locally.

Skipped when the optional extra is missing: python3 -m pip install 'pil-kmc[dask]'.
"""

from __future__ import annotations

import importlib.util
import io
import operator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pil_kmc
from pil_kmc import cli, distributed, palettes

# Imported by the fixture, not at collection: a child process's ru_maxrss starts at its
# parent's, and tests that measure a child's peak memory must not see dask's.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="dask.distributed is not installed (pip install 'pil-kmc[dask]')",
)


@pytest.fixture(scope="module")
def client():
    import distributed as dask_distributed

    cluster = dask_distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    c = dask_distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def photo(w: int, h: int, shift: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 3 + shift) % 256, (y * 4) % 256, (x * y + 7 * shift) % 256], axis=2)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """19 small images of three colour models, and one broken file in the middle."""
    folder = tmp_path_factory.mktemp("many")
    paths = []
    for i in range(19):
        a = photo(30 + i, 20 + i % 5, 11 * i).astype(np.uint8)
        if i % 6 == 1:
            im = Image.fromarray(a[:, :, 0], "L")
        elif i % 6 == 2:
            alpha = np.where(np.arange(a.shape[1]) % 4 == 0, 0, 200).astype(np.uint8)
            im = Image.fromarray(np.dstack([a, np.broadcast_to(alpha, a.shape[:2])]), "RGBA")
        else:
            im = Image.fromarray(a)
        path = folder / f"im{i:02}.png"
        im.save(path)
        paths.append(path)
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths.insert(7, broken)
    return paths


def local_bytes(path: Path, **params) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, "KMC", **params)
    return buffer.getvalue()


def test_shared_palette_on_the_cluster_is_the_local_one(client, inputs):
    good = [p for p in inputs if p.name != "broken.png"]
    # More inputs than one window of tasks and than one reduce task's fan-in.
    assert len(good) > distributed._FAN_IN and len(good) > 4 * 2
    remote = distributed.shared_palette(client, good, 48, seed=3)
    assert np.array_equal(remote, pil_kmc.shared_palette(good, 48, seed=3))
    assert remote.shape == (48, 4)  # gray, RGB and RGBA inputs: the widest model
    with pytest.raises(OSError, match="broken.png"):
        distributed.shared_palette(client, inputs, 48)


def test_merged_histogram_reports_each_broken_input_and_sums_the_rest(client, inputs):
    part = distributed.merged_histogram(inputs, client)
    assert [(f.index, f.kind) for f in part.failures] == [(7, "unreadable")]
    assert "broken.png" in part.failures[0].message
    local = palettes.merge_histograms(
        palettes.image_histogram(p) for p in inputs if p.name != "broken.png"
    )
    assert np.array_equal(part.histogram.keys, local.keys)
    assert np.array_equal(part.histogram.counts, local.counts)


def test_batch_encoding_gives_the_local_bytes_and_goes_past_a_broken_input(client, inputs):
    palette = pil_kmc.shared_palette([p for p in inputs if p.name != "broken.png"], 32)
    for params in ({"clusters": 16, "seed": 1}, {"palette": palette}):
        outcomes = sorted(distributed.encode_batch(client, inputs, params), key=lambda o: o.index)
        assert [o.index for o in outcomes] == list(range(len(inputs)))
        for outcome, path in zip(outcomes, inputs, strict=True):
            if path.name == "broken.png":
                assert outcome.kind == "unreadable" and "broken.png" in outcome.message
            else:
                assert outcome.ok and outcome.data == local_bytes(path, **params)
    bad = list(distributed.encode_batch(client, inputs[:1], {"clusters": 0}))
    assert bad[0].kind == "usage" and "clusters" in bad[0].message


def test_kmc_encode_on_the_scheduler_writes_what_the_local_run_writes(client, inputs, tmp_path):
    address = client.scheduler.address
    local = tmp_path / "local"
    remote = tmp_path / "remote"
    for run, folder in ((["-j", "1"], local), (["--scheduler", address], remote)):
        folder.mkdir()
        for path in inputs:
            (folder / path.name).write_bytes(path.read_bytes())
        names = [str(folder / p.name) for p in inputs]
        status = cli.main(["encode", *names, "--shared-palette", "-k", "40", *run])
        assert status == cli.UNREADABLE  # the broken input; every other one is written
    written = sorted(p.name for p in local.glob("*.kmc"))
    assert len(written) == len(inputs) - 1
    assert written == sorted(p.name for p in remote.glob("*.kmc"))
    for name in written:
        assert (local / name).read_bytes() == (remote / name).read_bytes()
    # plain batch encoding, and existing outputs kept without --force, as locally
    names = [str(remote / p.name) for p in inputs if p.name != "broken.png"]
    assert cli.main(["encode", *names, "-k", "8", "--scheduler", address]) == cli.EXISTS
    assert cli.main(["encode", *names, "-k", "8", "--scheduler", address, "-f"]) == cli.OK
    for name in names:
        assert Path(name).with_suffix(".kmc").read_bytes() == local_bytes(Path(name), clusters=8)


class FailsOnTheWorker:
    """Pickles on the client; unpickling it on the cluster raises ZeroDivisionError."""

    def __reduce__(self):
        return (operator.truediv, (1, 0))


def test_a_task_that_fails_on_the_cluster_is_reported_and_the_batch_goes_on(client, inputs):
    good = [p for p in inputs if p.name != "broken.png"][:3]
    outcomes = list(distributed.encode_batch(client, good, {"text": {"x": FailsOnTheWorker()}}))
    assert sorted(o.index for o in outcomes) == [0, 1, 2]
    assert all(o.kind == "failed" and "failed on the cluster" in o.message for o in outcomes)
    assert all(o.name in o.message for o in outcomes)
    after = list(distributed.encode_batch(client, good[:1], {"clusters": 4}))
    assert after[0].ok and after[0].data == local_bytes(good[0], clusters=4)


def test_a_worker_keeps_pil_kmcs_threads_to_a_tasks_share_of_the_cores():
    from unittest import mock

    import distributed as dask_distributed

    from pil_kmc import parallel

    worker = mock.Mock()
    worker.state.nthreads = 2
    try:
        with (
            mock.patch.object(dask_distributed, "get_worker", return_value=worker),
            mock.patch.object(parallel, "cores", return_value=4),
        ):
            distributed._share_cores()
            assert parallel.workers() == 2
    finally:
        parallel.limit(None)
    distributed._share_cores()  # not on a worker: no limit
    assert parallel.workers() == parallel.cores()


def test_workers_on_one_host_share_its_cores():
    from unittest import mock

    import distributed as dask_distributed

    from pil_kmc import parallel

    worker = mock.Mock()
    worker.state.nthreads = 1
    worker.address = "tcp://10.0.0.5:4000"
    try:
        with (
            mock.patch.object(dask_distributed, "get_worker", return_value=worker),
            mock.patch.object(parallel, "cores", return_value=8),
        ):
            distributed._share_cores({"10.0.0.5": 4, "10.0.0.6": 8})  # 4 one-thread workers
            assert parallel.workers() == 2
            distributed._share_cores({"10.0.0.6": 8})  # its host not known: the worker alone
            assert parallel.workers() == 8
    finally:
        parallel.limit(None)


def test_host_threads_count_every_worker_of_a_host(client):
    hosts = distributed._host_threads(client)
    assert list(hosts.values()) == [2]  # the fixture's two one-thread processes, one machine

    def threads_in_a_task(hosts):
        from pil_kmc import distributed, parallel

        distributed._share_cores(hosts)
        return parallel.workers(), parallel.cores()

    workers, cores = client.submit(threads_in_a_task, hosts, pure=False).result()
    assert workers == max(1, cores // 2)


def test_a_batch_tells_its_tasks_the_threads_of_every_host(client, inputs, monkeypatch):
    seen = []

    def windowed(client, func, items):
        seen.extend(args for _, args in items)
        return iter(())

    monkeypatch.setattr(distributed, "windowed", windowed)
    list(distributed.encode_batch(client, inputs[:2], {"clusters": 4}))
    assert [args[4] for args in seen] == [distributed._host_threads(client)] * 2
