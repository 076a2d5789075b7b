"""Datasets: the strict IDX reader on real and generated files, the lookup order, the download path
against a real HTTP server on 127.0.0.1, .npz and .csv."""

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from chainrule.training import data
from chainrule.training.data import DataError, load_dataset, read_idx, write_idx

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="../shared/datasets not present")


@needs_shared
def test_real_mnist_test_set_matches_its_published_checksums_and_reads():
    for name, md5 in (
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ):
        assert hashlib.md5((SHARED / "mnist" / name).read_bytes()).hexdigest() == md5
        assert data.REMOTES["mnist"].md5["test_images" if "images" in name else "test_labels"] == md5
    images = read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_shared
def test_full_fashion_mnist_from_a_data_dir():
    dataset = load_dataset("fashion-mnist", data_dir=SHARED, download=False)
    assert dataset.X_train.shape == (60000, 784) and dataset.X_test.shape == (10000, 784)
    assert np.bincount(dataset.y_train).tolist() == [6000] * 10
    assert dataset.classes[0] == "T-shirt/top" and dataset.image_shape == (28, 28)
    assert dataset.source == str(SHARED / "fashion-mnist")


@pytest.mark.parametrize("compress", [True, False])
def test_generated_idx_round_trip(tmp_path, compress):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4)).astype(np.uint8)
    path = tmp_path / ("x.gz" if compress else "x.idx")
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") is compress
    np.testing.assert_array_equal(read_idx(path), array)
    raw = path.read_bytes() if not compress else gzip.decompress(path.read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and int.from_bytes(raw[4:8], "big") == 5


def idx_bytes(array):
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an IDX file (only 0 bytes)"),
        (b"\x1f\x8b\x08\x00garbage", "cannot read it as an IDX file"),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01\x05", "magic number 0x00010801"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "magic number 0x00000701"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (idx_bytes(np.zeros((3, 2, 2)))[:-1], "(truncated)"),
        (idx_bytes(np.zeros((3, 2, 2))) + b"\x00", "(trailing bytes)"),
        (b"\x00\x00\x08\x02\xff\xff\xff\xff\xff\xff\xff\xff", "declares 18446744065119617025 (truncated)"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x00", "implausible IDX dimensions (0,)"),
    ],
)
def test_corrupt_idx_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_idx(path)


def test_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((100, 10)))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="cannot read it as an IDX file"):
        read_idx(path)


def make_idx_folder(folder, n_train=40, n_test=10, images_train=None, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", rng.integers(0, 256, (images_train or n_train, 6, 6)))
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", rng.integers(0, 3, n_train))
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_test, 6, 6)))
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", rng.integers(0, 3, n_test))
    return folder


def test_any_folder_of_idx_files(tmp_path):
    dataset = load_dataset(str(make_idx_folder(tmp_path / "mine", gz=False)))
    assert dataset.X_train.shape == (40, 36) and dataset.image_shape == (6, 6) and dataset.classes == ("0", "1", "2")


def test_images_and_labels_of_different_counts(tmp_path):
    with pytest.raises(DataError, match="41 train images but 40 train labels"):
        load_dataset(str(make_idx_folder(tmp_path / "bad", images_train=41)))


def test_lookup_order_and_not_found_message(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CHAINRULE_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path / "flag", download=False)
    message = str(err.value)
    places = [str(tmp_path / "flag"), str(tmp_path / "env"), "/usr/share/datasets/mnist", str(tmp_path / "cache")]
    assert all(p in message for p in places) and "--data-dir" in message
    assert [message.index(p) for p in places] == sorted(message.index(p) for p in places)
    make_idx_folder(tmp_path / "env" / "mnist")
    assert load_dataset("mnist", download=False).source == str(tmp_path / "env" / "mnist")
    make_idx_folder(tmp_path / "flag")
    assert load_dataset("mnist", data_dir=tmp_path / "flag", download=False).source == str(tmp_path / "flag")


# -- download ---------------------------------------------------------------------------------------------
class Server:
    """A real HTTP server on 127.0.0.1 serving ``files``; ``cut`` bytes are withheld from a response whose
    Content-Length still announces the whole file (an interrupted download)."""

    def __init__(self, files, cut=0):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) - outer.cut])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.cut = cut
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Generated MNIST-like .gz files, the remote's checksums set to theirs, the cache in tmp_path."""
    folder = make_idx_folder(tmp_path / "upstream")
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    md5 = {role: hashlib.md5(files[f"{base}.gz"]).hexdigest() for role, base in data.IDX_FILES.items()}
    monkeypatch.setitem(data.REMOTES, "mnist", data.Remote(("unused",), md5, data.DIGIT_CLASSES))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return files, tmp_path / "cache" / "chainrule" / "mnist"


def test_download_into_the_cache_then_found_there(served):
    files, cache = served
    with Server(files) as server:
        folder = data.download_dataset("mnist", mirrors=(server.url,), progress=False)
    assert folder == cache and sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert load_dataset("mnist", download=False).X_train.shape == (40, 36)


def test_checksum_mismatch_leaves_no_file(served, monkeypatch):
    files, cache = served
    tampered = dict(files)
    body = files["train-images-idx3-ubyte.gz"]
    tampered["train-images-idx3-ubyte.gz"] = body[:20] + bytes([body[20] ^ 0xFF]) + body[21:]
    with Server(tampered) as server, pytest.raises(DataError, match="checksum mismatch"):
        data.download_dataset("mnist", mirrors=(server.url,), progress=False)
    assert not any(
        p.name.startswith("train-images") or p.suffix == ".part" or p.name.startswith(".") for p in cache.iterdir()
    )


def test_interrupted_download_leaves_no_half_file(served):
    files, cache = served
    with Server(files, cut=100) as server, pytest.raises(DataError, match="could not download"):
        data.download_dataset("mnist", mirrors=(server.url,), progress=False)
    assert list(cache.iterdir()) == []


def test_second_mirror_is_tried(served):
    files, cache = served
    with Server({}) as empty, Server(files) as full:
        data.download_dataset("mnist", mirrors=(empty.url, full.url), progress=False)
    assert len(list(cache.iterdir())) == 4


def test_load_dataset_downloads_when_not_found(served, monkeypatch):
    files, cache = served
    with Server(files) as server:
        monkeypatch.setenv("CHAINRULE_MIRRORS", server.url)
        dataset = load_dataset("mnist", data_dir=cache.parent / "nowhere", progress=False)
    assert dataset.source == str(cache)


# -- npz and csv -------------------------------------------------------------------------------------------
def test_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        X_train=rng.random((20, 3)),
        y_train=rng.integers(0, 2, 20),
        X_test=rng.random((5, 3)),
        y_test=rng.integers(0, 2, 5),
    )
    dataset = load_dataset(str(tmp_path / "d.npz"))
    assert dataset.X_train.shape == (20, 3) and dataset.classes == ("0", "1")
    table = np.column_stack([rng.integers(0, 3, 30), rng.random((30, 4))])
    np.savetxt(tmp_path / "d.csv", table, delimiter=",", header="label,a,b,c,d", comments="")
    dataset = load_dataset(str(tmp_path / "d.csv"))
    assert dataset.X_train.shape == (24, 4) and dataset.X_test.shape == (6, 4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.savez(p, X_train=np.zeros((2, 2)), y_train=np.zeros(2)), "missing array 'X_test'"),
        (
            lambda p: np.savez(
                p, X_train=np.zeros((2, 2)), y_train=np.zeros(3), X_test=np.zeros((1, 2)), y_test=np.zeros(1)
            ),
            r"X_train has shape \(2, 2\) but y_train has shape",
        ),
        (
            lambda p: np.savez(
                p, X_train=np.zeros((2, 2)), y_train=np.array([0.5, 1]), X_test=np.zeros((1, 2)), y_test=np.zeros(1)
            ),
            "labels must be integers",
        ),
        (
            lambda p: np.savez(
                p,
                X_train=np.array([None, 1], dtype=object),
                y_train=np.zeros(2),
                X_test=np.zeros((1, 2)),
                y_test=np.zeros(1),
            ),
            "holds Python objects",
        ),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a readable .npz"),
    ],
)
def test_bad_npz(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(DataError, match=message):
        load_dataset(str(path))


def test_unknown_dataset_name():
    with pytest.raises(
        DataError, match="unknown dataset 'cifar': expected one of digits, mnist, fashion-mnist, a folder of IDX"
    ):
        load_dataset("cifar")


def test_digits_is_embedded_and_split_the_same_way_every_time():
    a, b = data.load_digits(), data.load_digits()
    assert a.X_train.shape == (1438, 64) and a.X_test.shape == (359, 64)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.X_train.max() == 16
