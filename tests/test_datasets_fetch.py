"""Fetching against a local HTTP server started by the test: install, checksum, unsafe archives, resume."""

import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.datasets import DATASETS
from bench.datasets._fetch import MARKER, ChecksumMismatch, Download, UnsafeArchive, check_installed, download, install
from dataset_fixtures import cards_with, write_div2k, write_stl10


class Server:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 with Range support; names in ``drop`` get their
    connection closed half-way through the body, once each."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.drop:
                    server.drop.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def zip_of(folder: Path, top: str, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted((folder / top).rglob("*")):
            zf.write(p, p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_of(folder: Path, top: str, members: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder / top, arcname=top)
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isreg() else None)
    return buf.getvalue()


def spec_for(server: Server, name: str, data: bytes, provides: str, **kw) -> Download:
    server.files[name] = data
    return Download(name=name, provides=provides, url=server.url + name, size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), checksum_source="test", **kw)


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def div2k_zip(tmp_path):
    src = write_div2k(tmp_path / "src", n_train=2, n_test=3)
    return zip_of(src, "DIV2K_valid_HR")


def test_good_archive_installs_with_marker(tmp_path, server, div2k_zip):
    spec = spec_for(server, "DIV2K_valid_HR.zip", div2k_zip, "DIV2K_valid_HR")
    root = tmp_path / "div2k"
    msg = install(spec, root, progress=False, echo=lambda s: None)
    assert "installed 3 files" in msg
    assert leftovers(root) == ["DIV2K_valid_HR", f"DIV2K_valid_HR/{MARKER}"] + [f"DIV2K_valid_HR/0{k}.png" for k in (801, 802, 803)]
    marker = json.loads((root / "DIV2K_valid_HR" / MARKER).read_text())
    assert marker["archive"]["sha256"] == spec.sha256 and set(marker["files"]) == {"0801.png", "0802.png", "0803.png"}
    assert check_installed(root / "DIV2K_valid_HR", spec) == (True, check_installed(root / "DIV2K_valid_HR", spec)[1])
    assert "already installed" in install(spec, root, progress=False, echo=lambda s: None)
    assert len(server.requests) == 1  # the second install downloaded nothing


def test_checksum_mismatch_is_clear_and_leaves_nothing(tmp_path, server, div2k_zip):
    spec = spec_for(server, "DIV2K_valid_HR.zip", div2k_zip, "DIV2K_valid_HR")
    wrong = Download(**{**spec.__dict__, "sha256": "0" * 64})
    root = tmp_path / "div2k"
    with pytest.raises(ChecksumMismatch, match=r"sha256 is [0-9a-f]{64}, but the published sha256 is 0{64}.*deleted"):
        install(wrong, root, progress=False, echo=lambda s: None)
    assert leftovers(root) == []
    with pytest.raises(ChecksumMismatch, match="bytes, but the published archive has"):
        install(Download(**{**spec.__dict__, "size": spec.size + 1}), root, progress=False, echo=lambda s: None, retry_wait=0)
    assert leftovers(root) == []


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("evil", ["../escaped.png", "/abs/escaped.png", "DIV2K_valid_HR/../../escaped.png"])
def test_member_escaping_the_target_is_refused(tmp_path, server, kind, evil):
    src = write_div2k(tmp_path / "src", n_train=1, n_test=2)
    if kind == "zip":
        data = zip_of(src, "DIV2K_valid_HR", {evil: b"gotcha"})
    else:
        m = tarfile.TarInfo(evil)
        m.size = 6
        data = tar_of(src, "DIV2K_valid_HR", [m])
    spec = spec_for(server, f"a.{kind}", data, "DIV2K_valid_HR")
    root = tmp_path / "root" / "div2k"
    with pytest.raises(UnsafeArchive, match=re.escape(repr(evil))):
        install(spec, root, progress=False, echo=lambda s: None)
    assert leftovers(tmp_path / "root") == ["div2k"]  # no target, no temporary folder, no download
    assert not list(tmp_path.rglob("escaped.png"))


@pytest.mark.parametrize("link", ["../../outside", "/etc/passwd", "0801.png"])
@pytest.mark.parametrize("kind", ["sym", "hard"])
def test_tar_links_are_refused(tmp_path, server, link, kind):
    src = write_div2k(tmp_path / "src", n_train=1, n_test=2)
    m = tarfile.TarInfo("DIV2K_valid_HR/link.png")
    m.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
    m.linkname = link
    spec = spec_for(server, "a.tar.gz", tar_of(src, "DIV2K_valid_HR", [m]), "DIV2K_valid_HR")
    with pytest.raises(UnsafeArchive, match="outside the target" if link != "0801.png" else "is a link"):
        install(spec, tmp_path / "root", progress=False, echo=lambda s: None)
    assert leftovers(tmp_path / "root") == []


def test_zip_symlink_outside_is_refused(tmp_path, server):
    src = write_div2k(tmp_path / "src", n_train=1, n_test=1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(src / "DIV2K_valid_HR" / "0801.png", "DIV2K_valid_HR/0801.png")
        info = zipfile.ZipInfo("DIV2K_valid_HR/link.png")
        info.external_attr = (0o120777 << 16)  # a symbolic link
        zf.writestr(info, "../../../etc/passwd")
    spec = spec_for(server, "a.zip", buf.getvalue(), "DIV2K_valid_HR")
    with pytest.raises(UnsafeArchive, match="points outside the target"):
        install(spec, tmp_path / "root", progress=False, echo=lambda s: None)
    assert leftovers(tmp_path / "root") == []


def test_interrupted_download_resumes_with_range(tmp_path, server):
    data = bytes(range(256)) * 4000  # ~1 MB
    server.files["big.bin"] = data
    server.drop.add("big.bin")
    out = download(server.url + "big.bin", tmp_path / "big.bin", progress=False, retry_wait=0)
    assert out.read_bytes() == data and not (tmp_path / "big.bin.part").exists()
    assert server.requests[0] == ("big.bin", None)
    assert server.requests[1] == ("big.bin", f"bytes={len(data) // 2}-")


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path, server, div2k_zip):
    spec = spec_for(server, "DIV2K_valid_HR.zip", div2k_zip, "DIV2K_valid_HR")
    root = tmp_path / "div2k"
    part = root / ".downloads" / "DIV2K_valid_HR.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(div2k_zip[:1000])
    install(spec, root, progress=False, echo=lambda s: None)
    assert server.requests == [("DIV2K_valid_HR.zip", "bytes=1000-")]
    assert len(DATASETS.get("div2k")("test", root)) == 3


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    data = b"abcdefgh" * 1000
    server.files["f"] = data
    server.honour_range = False
    (tmp_path / "f.part").write_bytes(b"XXXX")
    assert download(server.url + "f", tmp_path / "f", progress=False).read_bytes() == data


def test_http_error_is_clear(tmp_path, server):
    from bench.datasets import DatasetError

    with pytest.raises(DatasetError, match="HTTP 404"):
        download(server.url + "missing.zip", tmp_path / "m.zip", progress=False)


def test_no_network_fails_at_once_without_promising_a_resume(tmp_path, monkeypatch):
    import socket
    import time
    import urllib.error
    import urllib.request

    from bench.datasets.base import DatasetError

    def no_dns(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    t0 = time.perf_counter()
    with pytest.raises(DatasetError) as exc:
        download("https://example.invalid/x.zip", tmp_path / "x.zip", retry_wait=30)  # a retry would sleep 30 s
    assert time.perf_counter() - t0 < 5
    text = str(exc.value)
    assert "cannot resolve its host" in text and "no network" in text and "resumes from" not in text


def test_existing_unverified_folder_needs_force(tmp_path, server, div2k_zip):
    spec = spec_for(server, "DIV2K_valid_HR.zip", div2k_zip, "DIV2K_valid_HR")
    root = tmp_path / "div2k"
    write_div2k(root, n_train=1, n_test=5)  # unpacked by hand: no marker
    from bench.datasets import DatasetError

    with pytest.raises(DatasetError, match="--force"):
        install(spec, root, progress=False, echo=lambda s: None)
    install(spec, root, force=True, progress=False, echo=lambda s: None)
    assert len(DATASETS.get("div2k")("test", root)) == 3 and leftovers(root).count("DIV2K_valid_HR/0805.png") == 0
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------- the CLI, end to end


def test_cli_fetch_list_verify_div2k(tmp_path, server, monkeypatch):
    from bench.cli import main

    src = write_div2k(tmp_path / "src", n_train=2, n_test=3)
    train = spec_for(server, "DIV2K_train_HR.zip", zip_of(src, "DIV2K_train_HR"), "DIV2K_train_HR")
    valid = spec_for(server, "DIV2K_valid_HR.zip", zip_of(src, "DIV2K_valid_HR"), "DIV2K_valid_HR")
    downloads = [{k: v for k, v in s.__dict__.items() if v is not None} for s in (train, valid)]
    monkeypatch.setenv("BENCH_CARDS", str(cards_with(tmp_path, "div2k", downloads=downloads, images={"train": 2, "test": 3})))
    root = tmp_path / "data" / "div2k"
    run = lambda *a: CliRunner().invoke(main, list(a), catch_exceptions=False)
    r = run("data", "fetch", "div2k", "--root", str(root), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "matches the published value" in r.output and "installed 3 files" in r.output
    r = run("data", "list", "div2k", "--root", str(root))
    assert r.exit_code == 0 and r.output.count(" official: matches the archive") == 2, r.output
    test = DATASETS.get("div2k")("test", root)
    assert test.identity()["official"] is True
    assert run("data", "verify", "div2k", "--root", str(root)).exit_code == 0
    # Same size, other bytes: only the deep check sees it.
    png = root / "DIV2K_valid_HR" / "0802.png"
    raw = bytearray(png.read_bytes())
    raw[-20] ^= 0xFF
    png.write_bytes(bytes(raw))
    r = run("data", "verify", "div2k", "--root", str(root))
    assert r.exit_code == 1 and "changed (0802.png)" in r.output
    # A file removed (and the flipped byte broke 0802.png's CRC): no longer official, still loads, with a warning.
    (root / "DIV2K_valid_HR" / "0803.png").unlink()
    test = DATASETS.get("div2k")("test", root)
    assert len(test) == 1 and [s["id"] for s in test.skipped] == ["DIV2K_valid_HR/0802.png"]
    assert test.identity()["official"] is False and "missing (0803.png)" in test.official()[1]
    assert any(line.startswith("WARNING div2k/test: not the official dataset") for line in test.report())
    assert "NOT official" in run("data", "list", "div2k", "--root", str(root)).output


def test_cli_fetch_stl10_tar_from_archive_dir(tmp_path, monkeypatch):
    from bench.cli import main

    write_stl10(tmp_path / "src", n_train=3, n_test=2)
    data = tar_of(tmp_path / "src", "stl10_binary")
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "stl10_binary.tar.gz").write_bytes(data)
    md5 = {f: hashlib.md5((tmp_path / "src" / "stl10_binary" / f).read_bytes()).hexdigest() for f in ("train_X.bin", "test_X.bin")}
    downloads = [{"name": "stl10_binary.tar.gz", "provides": "stl10_binary", "url": "http://127.0.0.1:9/unused",
                  "sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}]
    monkeypatch.setenv("BENCH_CARDS", str(cards_with(tmp_path, "stl10", downloads=downloads, images={"train": 3, "test": 2},
                                                     **{"extra.file_md5": md5})))
    root = tmp_path / "stl10"
    r = CliRunner().invoke(main, ["data", "fetch", "stl10", "--root", str(root), "--archive-dir", str(tmp_path / "archives")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "archives" / "stl10_binary.tar.gz").exists()  # the user's archive is never deleted
    assert DATASETS.get("stl10")("test", root).identity()["official"] is True
    r = CliRunner().invoke(main, ["data", "list", "stl10", "--root", str(root)])
    assert "3 images  official" in r.output and "2 images  official" in r.output


def test_cli_fetch_landscape_prints_kaggle_command(tmp_path):
    from bench.cli import main

    r = CliRunner().invoke(main, ["data", "fetch", "landscape", "--root", str(tmp_path / "land")])
    assert r.exit_code == 0
    assert "kaggle datasets download -d arnaud58/landscape-pictures -p " + str(tmp_path / "land") in r.output
    assert f"unzip -q {tmp_path / 'land'}/landscape-pictures.zip -d {tmp_path / 'land'}" in r.output
    assert not (tmp_path / "land").exists()


def test_data_list_says_folder_has_no_default_place(tmp_path, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    r = CliRunner().invoke(main, ["data", "list", "folder"])
    assert r.output.startswith("folder: any folder of images, given with --root DIR (it has no default place)"), r.output
    assert str(tmp_path) not in r.output  # no place that would never be read


def test_real_cards_carry_published_checksums():
    from bench.config import DatasetCard
    from bench.datasets._fetch import card_downloads

    for name, n in (("div2k", 2), ("stl10", 1)):
        specs = card_downloads(DatasetCard.load(name))
        assert len(specs) == n
        for s in specs:
            assert s.url.startswith("http") and s.size and re.fullmatch(r"[0-9a-f]{64}", s.sha256) and s.checksum_source
