"""The pixel cache and where pixels come from: identical crops and evaluation images with and without the
cache, one shared copy of the pixels, atomic and concurrent builds, the size announced and refused when the
disk lacks room, ``--no-cache`` and ``bench data prepare``; the choice of GPU JPEG decoding (its CUDA part
runs in tests/test_cuda.py) and the evaluation's prefetching."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader

from bench.checkpoint import load_checkpoint
from bench.cli import main as cli
from bench.datasets import DATASETS
from bench.datasets import cache as cache_mod
from bench.datasets._files import FileImageSet
from bench.datasets.cache import CacheError, PixelCache, cache_folder, ensure_cache, pixels_root, planned_bytes, scaled_shape
from bench.datasets.pixels import CudaJpegPixels, gpu_jpeg_applies, loader_options, pixel_source
from bench.datasets.views import DecodedPixels, EvalView, TrainCrops, eval_scale, resize_short, train_crops, train_scale
from bench.device import prefetch
from bench.recipes import load_recipe
from bench.train import train
from conftest import TINY, smooth_image, write_folder_dataset
from dataset_fixtures import write_div2k, write_stl10


def div2k_like(root: Path) -> Path:
    """A DIV2K layout with images of several sizes, one smaller than the crops below (upscaled when cut)."""
    rng = np.random.default_rng(1)
    folder = root / "DIV2K_train_HR"
    folder.mkdir(parents=True)
    for k, (h, w) in enumerate([(90, 140), (130, 70), (40, 52), (101, 99)], start=1):
        Image.fromarray(smooth_image(rng, h, w)).save(folder / f"{k:04d}.png")
    return root


def crops_equal(a: TrainCrops, b: TrainCrops, ks) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ks)


@pytest.mark.parametrize("kind", ["folder", "div2k"])
def test_crops_and_eval_images_identical_with_and_without_cache(tmp_path, kind):
    if kind == "folder":  # the card's short_side 256 (from 48 x 64: upscaled)
        images, size = DATASETS.get("folder")("train", write_folder_dataset(tmp_path / "f")), 32
    else:  # as a card without short_side reads them: full size, one image smaller than the crop
        images, size = DATASETS.get("div2k")("train", div2k_like(tmp_path / "d")), 48
    resize_to = images.card.short_side if kind == "folder" else None
    scale = TrainCrops.scale_for(size, resize_to)
    assert scale == (256 if kind == "folder" else None) and (kind == "div2k" or scale == train_scale(images, size))
    cached = pixel_source(images, scale)
    assert isinstance(cached, PixelCache) and cached.nbytes == planned_bytes(images, scale)
    ks = list(range(200)) + [-1 - k for k in range(20)]  # the training stream and the preparation stream
    assert crops_equal(TrainCrops(images, size, 7, resize_to=resize_to),
                       TrainCrops(images, size, 7, resize_to=resize_to, pixels=cached), ks)
    if kind == "folder":  # as bench.train builds them
        assert crops_equal(train_crops(images, size, 7), train_crops(images, size, 7, cached), ks[:50])
    for protocol in ({"mode": "tiles", "short_side": 64, "tile": 32}, {"mode": "center_crop", "short_side": 40, "size": 32},
                     {"mode": "center_crop", "short_side": None, "size": 32}, {"mode": "full", "short_side": 256}):
        plain = EvalView(images, protocol)
        fast = EvalView(images, protocol, pixels=pixel_source(images, eval_scale(protocol), keep=1))
        assert len(plain) == len(fast) and fast.pixels.describe()["source"] == "cache"
        assert all(torch.equal(plain[k][0], fast[k][0]) for k in range(len(plain)))


def test_a_pixel_source_must_fit_the_crops(tmp_path):
    images = DATASETS.get("folder")("train", write_folder_dataset(tmp_path / "f"))
    with pytest.raises(ValueError, match="scale 128 .* scale 256"):
        TrainCrops(images, 32, 0, resize_to=256, pixels=DecodedPixels(images, 128))


def test_scaled_shape_is_what_resize_short_gives():
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w, short = int(rng.integers(20, 300)), int(rng.integers(20, 300)), int(rng.integers(16, 260))
        assert scaled_shape(h, w, short) == tuple(resize_short(torch.zeros(3, h, w, dtype=torch.uint8), short).shape[-2:])
    assert scaled_shape(30, 40, None) == (30, 40)


def test_training_is_bit_identical_with_and_without_cache(tmp_path):
    images = DATASETS.get("div2k")("train", div2k_like(tmp_path / "d"))
    recipe = load_recipe("kmeans32", "cpu", {**TINY, "train.steps": "3"})
    a = train(recipe, images, results=tmp_path / "a", progress=False)
    # The recipe key turns the cache off (the CLI's --no-cache is tested below).
    b = train(load_recipe("kmeans32", "cpu", {**TINY, "train.steps": "3", "train.pixel_cache": "false"}), images,
              results=tmp_path / "b", progress=False)
    wa, wb = (load_checkpoint(o.run_dir / "checkpoint.pt")["model"] for o in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.run_dir.name == b.run_dir.name  # how pixels are read is not part of a run's identity
    meta = [json.loads((o.run_dir / "train.json").read_text()) for o in (a, b)]
    assert meta[0]["pixels"]["source"] == "cache" and meta[1]["pixels"]["source"] == "decode"
    assert "pixel_cache" not in meta[0]["recipe"]["train"]


def test_workers_share_the_mapped_pixels(tmp_path):
    images = DATASETS.get("div2k")("train", div2k_like(tmp_path / "d"))
    cache = pixel_source(images, None)
    img = cache.image(0)
    # The image is a view on the file's mapping, not a copy; a pickled source (what a worker receives)
    # carries no pixels and maps the files again.
    assert np.shares_memory(img.numpy(), cache._shards[0])
    blob = pickle.dumps(cache)
    assert len(blob) < 4096 < cache.nbytes and pickle.loads(blob)._shards is None
    crops = TrainCrops(images, 32, 0, pixels=cache)
    batches = [torch.cat(list(DataLoader(crops, batch_size=4, sampler=range(16), num_workers=w))) for w in (0, 2)]
    assert torch.equal(*batches)


def test_cache_key_follows_scale_content_file_stamps_and_decoders(tmp_path, monkeypatch):
    root = write_div2k(tmp_path / "d", n_train=3, n_test=1)
    images = DATASETS.get("div2k")("train", root)
    full, small = cache_folder(images, None), cache_folder(images, 32)
    assert full != small and full.parent == small.parent == pixels_root()
    cache, _ = ensure_cache(images, None, progress=False, echo=lambda m: None)
    path = images.files[0]
    st = path.stat()
    path.write_bytes(path.read_bytes()[::-1][::-1])  # rewritten in place, same size: same content hash of names and sizes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its modification time restored (cp -p)
    again = DATASETS.get("div2k")("train", root)
    assert again.identity()["content_hash"] == images.identity()["content_hash"]
    assert cache_folder(again, None) != full  # the change time moved
    key = cache_mod.cache_key(again, None)
    monkeypatch.setattr(torch, "__version__", "0.0.1")  # another decoder or resize release: another key
    assert cache_mod.cache_key(again, None) != key
    monkeypatch.undo()
    # A manifest of another key in the folder (a 16-hex-digit prefix shared by chance) is never opened.
    manifest = json.loads((full / "manifest.json").read_text())
    assert manifest["key"].startswith(full.name.rsplit("-", 1)[1])
    assert cache_mod.open_cache(full, images, manifest["key"]) is not None
    assert cache_mod.open_cache(full, images, "0" * 64) is None


class Interrupt(BaseException):
    pass


def test_interrupted_or_damaged_builds_are_never_used(tmp_path, monkeypatch):
    images = DATASETS.get("div2k")("train", write_div2k(tmp_path / "d", n_train=5, n_test=1))
    folder = cache_folder(images, None)
    original = FileImageSet.load

    def failing(self, i):
        if i == 2:
            raise Interrupt  # as a Ctrl-C in the middle of the build
        return original(self, i)

    monkeypatch.setattr(FileImageSet, "load", failing)
    with pytest.raises(Interrupt):
        ensure_cache(images, None, progress=False)
    monkeypatch.setattr(FileImageSet, "load", original)
    assert not folder.exists() and not list(folder.parent.glob(f".{folder.name}.*.tmp"))
    # What a kill -9 leaves: a temporary folder of a process that is gone; and a folder without its manifest.
    stale = folder.parent / f".{folder.name}.{socket.gethostname()}.999999999.0badc0de.tmp"
    stale.mkdir()
    (stale / "shard-00000.u8").write_bytes(b"\0" * 10)
    folder.mkdir()
    (folder / "shard-00000.u8").write_bytes(b"\0" * 10)
    cache, built = ensure_cache(images, None, progress=False)
    assert built and not stale.exists() and (folder / "manifest.json").exists()
    assert all(torch.equal(cache.image(i), images.load(i)) for i in range(len(images)))
    with open(folder / "shard-00000.u8", "r+b") as fh:  # truncated afterwards: rebuilt, not read
        fh.truncate(100)
    assert ensure_cache(images, None, progress=False)[1]


def test_build_errors_say_whose_fault(tmp_path, monkeypatch):
    """A dataset file that cannot be read is the dataset's error, not the cache's; a cache folder that cannot
    be written says so, with BENCH_CACHE and --no-cache; a file system without locks still builds."""
    images = DATASETS.get("div2k")("train", write_div2k(tmp_path / "d", n_train=3, n_test=1))
    folder = cache_folder(images, 32)
    original = FileImageSet.load

    def unreadable(self, i):
        if i == 1:
            raise OSError(f"{self.files[i]}: input/output error")
        return original(self, i)

    monkeypatch.setattr(FileImageSet, "load", unreadable)
    with pytest.raises(OSError, match="0002.png: input/output error") as err:
        ensure_cache(images, 32, progress=False, echo=lambda m: None)
    assert not isinstance(err.value, CacheError) and not list(folder.parent.glob(f".{folder.name}.*.tmp"))
    monkeypatch.setattr(FileImageSet, "load", original)

    import filelock

    def no_locks(self, *a, **k):
        raise NotImplementedError("FileSystem does not appear to support flock")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_locks)
    said = []
    cache, built = ensure_cache(images, 32, progress=False, echo=said.append)
    assert built and len(cache) == 3 and any("no lock" in m for m in said)

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BENCH_CACHE", str(blocker))
    with pytest.raises(CacheError, match=r"cannot write under .*a-file.*BENCH_CACHE.*--no-cache"):
        ensure_cache(images, 32, progress=False, echo=lambda m: None)


def _build_in_child(images, barrier, results) -> None:
    barrier.wait()
    cache, built = ensure_cache(images, None, progress=False, echo=lambda m: None)
    results.put((built, str(cache.folder), cache.image(1).sum().item()))


@pytest.mark.parametrize("locking", [True, False])
def test_concurrent_builds_give_one_complete_cache(tmp_path, monkeypatch, locking):
    """Three processes want the same cache at once (as torchrun starts them). With the lock file one builds
    and the others wait; without working locks (some network filesystems) the first rename wins."""
    images = DATASETS.get("div2k")("train", write_div2k(tmp_path / "d", n_train=6, n_test=1))
    original = FileImageSet.load
    monkeypatch.setattr(FileImageSet, "load", lambda self, i: (time.sleep(0.05), original(self, i))[1])
    if not locking:
        class NoLock:
            def __init__(self, *a, **k): pass
            def acquire(self, *a, **k): pass
            def release(self): pass
        import filelock
        monkeypatch.setattr(filelock, "FileLock", NoLock)
    ctx = multiprocessing.get_context("fork")  # the patched loader travels with the fork
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(images, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    folder = cache_folder(images, None)
    assert {g[1] for g in got} == {str(folder)} and len({g[2] for g in got}) == 1
    assert sum(g[0] for g in got) == 1  # one built it; the others waited (or lost the race) and opened it
    assert not list(folder.parent.glob(f".{folder.name}.*.tmp"))
    assert all(torch.equal(PixelCache(folder).image(i), original(images, i)) for i in range(len(images)))


def test_size_announced_and_no_room_refused(tmp_path, monkeypatch):
    root = write_folder_dataset(tmp_path / "photos", n=6)
    runner = CliRunner()
    usage = cache_mod.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: usage._replace(free=cache_mod.RESERVE_BYTES + 1000))
    out = runner.invoke(cli, ["data", "prepare", "folder", "--root", str(root), "--split", "train"])
    assert out.exit_code == 1 and "Error:" in out.output
    assert "needs" in out.output and "free" in out.output and "--no-cache" in out.output and "BENCH_CACHE" in out.output
    images = DATASETS.get("folder")("train", root)
    folder = cache_folder(images, 256)
    assert not folder.exists() and not list(folder.parent.glob(f".{folder.name}.*.tmp"))
    monkeypatch.undo()
    out = runner.invoke(cli, ["data", "prepare", "folder", "--root", str(root), "--no-progress"])
    assert out.exit_code == 0, out.output
    need = planned_bytes(images, 256)
    assert f"{cache_mod.human_bytes(need)} to " in out.output  # announced before it is built
    assert "folder/train: built" in out.output and "folder/test: built" in out.output
    again = runner.invoke(cli, ["data", "prepare", "folder", "--root", str(root), "--no-progress"])
    assert "folder/train: already prepared" in again.output and "decoding" not in again.output


def test_prepare_names_bad_files_and_exits_as_run_does(tmp_path):
    root = write_folder_dataset(tmp_path / "photos", n=6)
    for name in ("zero.png", "broken.jpg"):
        (root / name).write_bytes(b"" if name == "zero.png" else b"not an image")
    out = CliRunner().invoke(cli, ["data", "prepare", "folder", "--root", str(root), "--split", "all", "--no-progress"])
    assert out.exit_code == 0, out.output
    skipped = [ln for ln in out.output.splitlines() if ln.startswith("  ") and ": cannot decode as an image" in ln]
    assert sorted(ln.split(":")[0].strip() for ln in skipped) == ["broken.jpg", "zero.png"], out.output  # each, with why
    out = CliRunner().invoke(cli, ["data", "prepare", "folder", "--root", str(root), "--on-bad-image", "error"])
    assert out.exit_code == 2 and "bad file(s)" in out.output  # a usage error before any work, as for bench run
    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(cli, ["data", "prepare", "folder", "--root", str(tmp_path / "empty")])
    assert out.exit_code == 2 and "no images" in out.output


def test_stl10_reads_its_memory_map_without_a_cache(tmp_path):
    write_stl10(tmp_path, n_train=3, n_test=2)
    images = DATASETS.get("stl10")("train", tmp_path)
    assert isinstance(pixel_source(images, None), DecodedPixels)
    out = CliRunner().invoke(cli, ["data", "prepare", "stl10", "--root", str(tmp_path)])
    assert out.exit_code == 0 and "no cache needed" in out.output


def test_no_cache_option_and_recipe_key(tmp_path, folder_dataset, monkeypatch):
    runner = CliRunner()
    base = ["--results", str(tmp_path / "r"), "train", "--method", "kmeans32", "--dataset", "folder", "--root", str(folder_dataset),
            "--no-progress", *[a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]]
    usage = cache_mod.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: usage._replace(free=cache_mod.RESERVE_BYTES + 1000))
    out = runner.invoke(cli, base)  # no room for the cache: a usage error before any work
    assert out.exit_code == 2 and "needs" in out.output and "--no-cache" in out.output, out.output
    assert not (tmp_path / "r").exists()
    out = runner.invoke(cli, [*base, "--no-cache"])  # validation lets it through: nothing will be cached
    assert out.exit_code == 0, out.output
    meta = json.loads(next((tmp_path / "r").rglob("train.json")).read_text())
    assert meta["pixels"]["source"] == "decode"
    monkeypatch.undo()
    out = runner.invoke(cli, [*base, "--set", "train.pixel_cache=false"])
    assert "already trained" in out.output  # the same run: how pixels are read is not part of its identity


def write_jpegs(root: Path) -> Path:
    """A DIV2K layout of JPEGs: plain RGB ones, a gray one and an EXIF-rotated one."""
    rng = np.random.default_rng(2)
    folder = root / "DIV2K_train_HR"
    folder.mkdir(parents=True)
    for k in range(4):
        Image.fromarray(smooth_image(rng, 60, 80)).save(folder / f"p{k}.jpg", quality=90)
    gray = Image.fromarray(smooth_image(rng, 60, 80)).convert("L")
    gray.save(folder / "gray.jpg")
    rotated = Image.fromarray(smooth_image(rng, 60, 80))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)
    return root


def test_gpu_jpeg_decoding_is_chosen_only_for_jpeg_files_on_cuda_without_cache(tmp_path):
    jpeg = DATASETS.get("div2k")("train", write_jpegs(tmp_path / "j"))
    png = DATASETS.get("div2k")("train", div2k_like(tmp_path / "p"))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert gpu_jpeg_applies(jpeg, cuda) and not gpu_jpeg_applies(jpeg, cpu) and not gpu_jpeg_applies(png, cuda)
    assert isinstance(pixel_source(jpeg, 256, cache=False), DecodedPixels)
    assert isinstance(pixel_source(jpeg, 256, cache=True, device="cpu"), PixelCache)
    # The source's decoding logic, run with torchvision's CPU decoder: plain RGB JPEGs through decode_jpeg
    # (libjpeg, as Pillow's), gray and EXIF-rotated ones through Pillow's conversions, exactly.
    source = CudaJpegPixels(jpeg, None, cpu, keep=0)
    for i, path in enumerate(jpeg.files):
        want = jpeg.load(i)
        got = source.image(i)
        assert got.shape == want.shape
        if path.stem in ("gray", "rotated"):
            assert torch.equal(got, want)
        else:
            assert (got.int() - want.int()).abs().float().mean() < 1.0


def test_batches_are_pinned_and_loaded_where_the_device_wants_them(tmp_path, monkeypatch):
    """Training: pinned batches (copied non-blocking) for CPU pixels on CUDA, no workers for pixels on the GPU.
    Evaluation: batches prefetched in a thread, pinned on CUDA only. (The copies themselves run in test_cuda.py.)"""
    images = DATASETS.get("div2k")("train", div2k_like(tmp_path / "d"))
    cache, cuda, cpu = pixel_source(images, None), torch.device("cuda"), torch.device("cpu")
    assert loader_options(cache, cuda, 8) == {"num_workers": 8, "pin_memory": True, "prefetch_factor": 4}
    assert loader_options(cache, cpu, 2) == {"num_workers": 2, "pin_memory": False, "prefetch_factor": 4}
    on_gpu = CudaJpegPixels(images, None, cpu, keep=0)
    on_gpu.device = cuda  # as CudaJpegPixels(..., cuda) is; nothing is decoded here
    assert loader_options(on_gpu, cuda, 8) == {"num_workers": 0, "pin_memory": False, "prefetch_factor": None}

    import bench.evaluate as ev
    from bench.methods.gray import Gray

    pinned = []
    monkeypatch.setattr(ev, "prefetch", lambda batches, pin=False, **kw: pinned.append(pin) or iter(()))
    view = EvalView(images, {"mode": "full"}, pixels=cache)
    for device in (cpu, cuda):  # no batch reaches the device: only the choice is looked at
        ev.evaluate(Gray(Gray.Params(), None), view, {}, device=device, progress=False, bootstrap=ev.Bootstrap(resamples=0))
    assert pinned == [False, True]


def test_prefetch_keeps_order_raises_and_stops():
    batches = [torch.full((2, 3), k) for k in range(7)]
    assert all(torch.equal(a, b) for a, b in zip(prefetch(iter(batches)), batches, strict=True))

    def broken():
        yield torch.zeros(1)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetch(broken()))
    produced = []

    def endless():
        k = 0
        while True:
            produced.append(k)
            yield k
            k += 1

    gen = prefetch(endless(), depth=2)
    assert next(gen) == 0
    gen.close()  # the consumer leaves early: the thread stops instead of loading on
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 4
