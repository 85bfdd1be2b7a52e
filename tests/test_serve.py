"""`sporeprint serve` as a person and a script use it: the real server on a free local
port, simulated photos posted to it, answers compared with `sporeprint score`; upload
caps, path handling, Host checks and the read-only store; the page in headless Chromium."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import photo_world_copy
from PIL import Image

from sporeprint.cli import main
from sporeprint.errors import SporeprintError
from store import FeatureStore, StoreError

ROOT = Path(__file__).resolve().parents[1]
SPACE = "tiny"
CHROMIUM = Path("/usr/bin/chromium")
MAX_UPLOAD_MB = 1
MAX_PIXELS = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(store, log_level: str = "warning"):
    """``(url, port, service)`` of the real app on a real uvicorn server in a thread over
    ``store``, started and ready; stopped and closed on exit."""
    import uvicorn

    from sporeprint.serve import Service, create_app

    service = Service(store)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                        log_level=log_level))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.started, "the server did not start within 60 s"
        yield f"http://127.0.0.1:{port}", port, service
    finally:
        srv.should_exit = True
        thread.join(timeout=20)
        service.close()


@pytest.fixture(scope="module")
def world(photo_world, tmp_path_factory):
    """A store with photos embedded by a tiny DINOv2 and a trained two-fold ensemble,
    and a batch of held-out single-photo observations scored by `sporeprint score`."""
    root = tmp_path_factory.mktemp("serve")
    store, files, model = photo_world_copy(photo_world, root / "world")  # scoring writes
    test = pacsv.read_csv(files["test"])
    ids = test["observation_id"].to_numpy()
    uniq, counts = np.unique(ids, return_counts=True)
    single = uniq[counts == 1][:4]  # one photo each: the observation's answer is the photo's
    batch = root / "batch.csv"
    pacsv.write_csv(test.filter(pa.array(np.isin(ids, single))), batch)
    assert main(["score", "--store", str(store), "--metadata", str(batch), "--images",
                 str(files["images"]), "--out", str(root / "batch.predictions.csv"),
                 "--workers", "0"]) == 0
    with FeatureStore(store, read_only=True) as fs:
        scored = {r["observation_id"]: r for r in fs.sql(
            "SELECT * FROM predictions WHERE batch = 'batch'").to_pylist()}
        train_obs = fs.sql("SELECT observation_id FROM observations WHERE role = 'train' "
                           "ORDER BY observation_id LIMIT 3").column(0).to_pylist()
        image_id = fs.sql("SELECT min(image_id) FROM images WHERE file_path IS NOT NULL"
                          ).column(0)[0].as_py()
    return {"root": root, "store": store, "batch": pacsv.read_csv(batch).to_pylist(),
            "scored": scored, "images": files["images"], "train_obs": train_obs,
            "image_id": image_id}


def _wait_ready(url: str, proc: subprocess.Popen | None = None, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/api/info", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def server(world):
    """`sporeprint serve` in its own process, as a user starts it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sporeprint", "serve", "--store", str(world["store"]),
         "--port", str(port), "--max-upload-mb", str(MAX_UPLOAD_MB),
         "--max-pixels", str(MAX_PIXELS)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield {"url": url, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- clients
def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                  f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                  f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                  .encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def request(url: str, data: bytes | None = None, ctype: str | None = None,
            method: str | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post_photo(url: str, photo: bytes, fields: dict | None = None, path: str = "/api/identify"):
    body, ctype = multipart({k: v for k, v in (fields or {}).items() if v is not None},
                            {"photo": ("photo.jpg", photo)})
    return request(url + path, body, ctype)


def post_json(url: str, obj) -> tuple[int, dict]:
    status, _, body = request(url + "/api/identify", json.dumps(obj).encode(), "application/json")
    return status, json.loads(body)


def raw_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", f"{host}:{port}")
    conn.endheaders()
    r = conn.getresponse()
    out = r.status, r.read()
    conn.close()
    return out


def metadata_fields(row: dict) -> dict:
    """The form fields of a metadata CSV row, as a person fills them in."""
    date = None
    if row["year"] and row["month"] and row["day"]:
        date = f"{int(row['year']):04d}-{int(row['month']):02d}-{int(row['day']):02d}"
    return {"date": date, "latitude": row["Latitude"], "longitude": row["Longitude"],
            "substrate": row["Substrate"], "meta_substrate": row["MetaSubstrate"],
            "habitat": row["Habitat"]}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- answers
def test_photo_answer_equals_the_batch_scorer(world, server):
    assert len(world["batch"]) >= 3
    for row in world["batch"]:
        photo = (world["images"] / row["image_path"]).read_bytes()
        status, _, body = post_photo(server["url"], photo, {**metadata_fields(row), "k": 3})
        assert status == 200, body
        got = json.loads(body)
        want = world["scored"][row["observation_id"]]
        assert got["answer"]["class_id"] == want["class_id"]
        assert abs(got["answer"]["poison_prob"] - want["poison_prob"]) < 1e-6
        assert got["answer"]["reason"] == want["reason"]
        assert [t["class_id"] for t in got["top5"]] == want["top5_class_ids"]
        assert got["evidence_observation_ids"] == want["evidence_observation_ids"]
        assert got["answer"]["kind"] == want["kind"]  # the stored kind of the batch's answer
        assert got["answer"]["kind"] in ("species", "unknown", "poison_risk")
        assert got["query"]["metadata"]["month"] == row["month"]
        hits = got["lookalikes"]
        assert len(hits) == 3 and {h["role"] for h in hits} == {"train"}
        assert all(h["image_url"] == f"/images/{h['image_id']}" for h in hits)


def test_metadata_changes_the_answer_input_and_bad_metadata_is_named(world, server):
    row = world["batch"][0]
    photo = (world["images"] / row["image_path"]).read_bytes()
    status, _, body = post_photo(server["url"], photo, {"latitude": "55.7"})
    assert status == 400 and b"both latitude and longitude" in body
    status, _, body = post_photo(server["url"], photo, {"date": "2021-13-40"})
    assert status == 400 and b"YYYY-MM-DD" in body
    status, _, body = post_photo(server["url"], photo, {"colour": "red"})
    assert status == 400 and b"colour" in body
    # A substrate alone gets its group, as ingestion does.
    status, _, body = post_photo(server["url"], photo, {"substrate": "dead wood (including bark)"})
    assert status == 200
    assert json.loads(body)["query"]["metadata"]["meta_substrate"] == "wood"


def test_identify_an_observation_or_a_vector_by_json(world, server):
    obs = world["train_obs"][0]
    status, got = post_json(server["url"], {"observation_id": obs, "k": 4, "poisonous": "yes"})
    assert status == 200, got
    assert got["query"]["stored"]["role"] == "train"
    assert obs not in [h["observation_id"] for h in got["lookalikes"]]
    assert {h["poisonous"] for h in got["lookalikes"]} == {True}
    # JSON values may be typed: a boolean, a [lat, lon] pair, numbers.
    status, typed = post_json(server["url"], {"observation_id": obs, "k": 2, "poisonous": False,
                                              "near": [56.0, 10.5], "radius_km": 2000,
                                              "latitude": 56.1, "longitude": 10.2})
    assert status == 200, typed
    assert typed["filters"] == {"role": "train", "poisonous": False, "near": [56.0, 10.5],
                                "radius_km": 2000.0}
    assert typed["query"]["metadata"]["latitude"] == 56.1
    assert {h["poisonous"] for h in typed["lookalikes"]} <= {False}
    with FeatureStore(world["store"], read_only=True) as fs:
        _, vectors = fs.fetch_embeddings(SPACE, fs.observation_image_ids(obs))
    status, by_vector = post_json(server["url"], {"vector": vectors[0].tolist(), "k": 2})
    assert status == 200 and len(by_vector["lookalikes"]) == 2
    assert by_vector["query"]["kind"] == "vector"
    status, err = post_json(server["url"], {"vector": [1.0, 2.0]})
    assert status == 400 and "has 2 numbers" in err["error"] and "dimension" in err["error"]
    status, err = post_json(server["url"], {"observation_id": 1})
    assert status == 404 and "not in the store" in err["error"]
    status, err = post_json(server["url"], [1, 2])
    assert status == 400 and "JSON object" in err["error"]


def test_search_api_applies_the_filters_of_sporeprint_search(world, server):
    obs = world["train_obs"][1]
    base = f"{server['url']}/api/search?observation={obs}"
    status, _, body = request(base + "&k=5&poisonous=yes")
    got = json.loads(body)
    assert status == 200 and len(got["lookalikes"]) == 5
    assert {h["poisonous"] for h in got["lookalikes"]} == {True}
    assert {h["role"] for h in got["lookalikes"]} == {"train"}
    status, _, body = request(base + "&k=3&role=val")
    assert status == 200 and {h["role"] for h in json.loads(body)["lookalikes"]} == {"val"}
    status, _, body = request(base + "&k=3&role=all&poisonous=no")
    assert status == 200 and {h["poisonous"] for h in json.loads(body)["lookalikes"]} == {False}
    for query, words in [("&role=trian", "trian"), ("&k=0", "k"), ("&k=1000", "k"),
                         ("&near=95,0&radius_km=10", "95"), ("&date_from=2020-02-31", "2020"),
                         ("&colour=red", "colour")]:
        status, _, body = request(base + query)
        assert status == 400, query
        assert words in json.loads(body)["error"], (query, body)
    status, _, body = request(f"{server['url']}/api/search?observation=1")
    assert status == 404


# ---------------------------------------------------------------------- safety limits
def test_uploads_over_the_caps_are_refused_before_they_are_read(world, server):
    over = os.urandom(int((MAX_UPLOAD_MB + 0.2) * 1024 * 1024))
    status, _, body = post_photo(server["url"], over)
    assert status == 413 and b"upload limit" in body
    # The same, streamed without a Content-Length.
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    payload, ctype = multipart({}, {"photo": ("p.jpg", over)})
    chunks = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
    try:
        conn.request("POST", "/api/identify", body=chunks, headers={"Content-Type": ctype},
                     encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 413 and b"upload limit" in r.read()
    finally:
        conn.close()
    status, _, body = post_photo(server["url"], png(1100, 1000))  # small file, 1.1 MP
    assert status == 413 and b"pixels" in body
    status, _, body = post_photo(server["url"], b"#!/bin/sh\necho not a photo\n")
    assert status == 400 and b"not a photo" in body
    status, _, body = request(server["url"] + "/api/identify", b"x=1",
                              "application/x-www-form-urlencoded")
    assert status == 400


@pytest.mark.parametrize("path", [
    "/images/../../etc/passwd", "/images/%2e%2e/%2e%2e/etc/passwd",
    "/images/..%2f..%2f..%2fetc%2fpasswd", "/images//etc/passwd", "/images/-1",
    "/images/99999999", "/images/abc", "/static/../service.py", "/static/%2e%2e/service.py",
    "/static/..%2fservice.py", "/../../../../etc/passwd"])
def test_no_path_in_a_url_reaches_the_file_system(server, path):
    status, body = raw_get(server["port"], path)
    assert status == 404, (path, status, body[:200])
    assert b"root:" not in body and b"import" not in body


def test_store_images_are_served_by_id_as_reencoded_jpeg(world, server):
    status, headers, body = request(f"{server['url']}/images/{world['image_id']}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(body))
    assert img.format == "JPEG" and max(img.size) <= 256
    status, _, body = request(f"{server['url']}/images/{world['image_id']}?size=100000")
    assert status == 400 and b"size" in body


def test_host_header_must_name_this_server(server):
    status, _ = raw_get(server["port"], "/api/info", host="attacker.example")
    assert status == 400
    status, _ = raw_get(server["port"], "/api/info", host="localhost")
    assert status == 200


def test_the_store_stays_read_only(world, server):
    before = hashlib.sha256(world["store"].read_bytes()).hexdigest()
    row = world["batch"][1]
    photo = (world["images"] / row["image_path"]).read_bytes()
    assert post_photo(server["url"], photo, metadata_fields(row))[0] == 200
    assert post_json(server["url"], {"observation_id": world["train_obs"][0]})[0] == 200
    assert json.loads(request(server["url"] + "/api/info")[2])["read_only"] is True
    # Another reader may open it while the server runs (a writer would hold it alone),
    # and nobody can open it for writing while the server reads it.
    with FeatureStore(world["store"], read_only=True) as fs:
        assert fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py() > 0
    with pytest.raises(StoreError):
        FeatureStore(world["store"], create=False)
    assert hashlib.sha256(world["store"].read_bytes()).hexdigest() == before


# ----------------------------------------------------------------------------- page
def test_page_renders_an_observation_and_an_uploaded_photo(world, server):
    obs = world["train_obs"][2]
    status, headers, body = request(f"{server['url']}/?observation={obs}&k=4")
    html = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    for needle in ('id="answer"', 'id="poison-prob"', 'id="reason"', 'id="top5"',
                   'id="lookalikes"', "/images/", f"Observation {obs}"):
        assert needle in html, needle
    assert html.count('<li class="card') == 4
    row = world["batch"][0]
    photo = (world["images"] / row["image_path"]).read_bytes()
    status, _, body = post_photo(server["url"], photo, {**metadata_fields(row), "k": 2,
                                                        "observation": ""}, path="/")
    html = body.decode()
    assert status == 200 and 'id="answer"' in html and "data:image/jpeg;base64," in html
    # The form as a browser sends it with no photo chosen: an empty file part.
    body, ctype = multipart({"observation": str(obs), "k": "3", "date": ""},
                            {"photo": ("", b"")})
    status, _, body = request(server["url"] + "/", body, ctype)
    assert status == 200 and body.decode().count('<li class="card') == 3
    status, _, body = request(f"{server['url']}/?observation=abc")
    assert status == 400 and 'id="error"' in body.decode()
    status, _, body = request(f"{server['url']}/?observation={obs}&near=1,2,3")
    assert status == 400 and "LAT,LON" in body.decode()


def test_a_store_without_photo_files_or_heads_serves_search_and_placeholders(tmp_path):
    """The simulation's vectors without photos and no trained heads: look-alike search,
    placeholder thumbnails and a clear refusal to identify."""
    from conftest import make_simulated_store

    path = make_simulated_store(tmp_path, dim=8)
    with FeatureStore(path, read_only=True) as fs:
        obs = fs.sql("SELECT min(observation_id) FROM observations WHERE role = 'val'"
                     ).column(0)[0].as_py()
        image_id = fs.sql("SELECT min(image_id) FROM images").column(0)[0].as_py()
    with serving(path) as (url, _, service):
        status, headers, body = request(f"{url}/images/{image_id}")
        assert status == 200 and headers["content-type"] == "image/svg+xml"
        status, _, body = request(f"{url}/api/search?observation={obs}&k=3")
        assert status == 200 and len(json.loads(body)["lookalikes"]) == 3
        status, got = post_json(url, {"observation_id": obs})
        assert status == 400 and "sporeprint train" in got["error"]
        status, _, body = request(f"{url}/?observation={obs}")
        assert "no trained heads" in body.decode()
        # Precomputed vectors have no model to embed a photo with: said in one line.
        with pytest.raises(SporeprintError, match="ingested precomputed"):
            service.embed_photo(png(64, 64))


def test_serve_refuses_a_missing_store_in_one_line(tmp_path, capsys):
    assert main(["serve", "--store", str(tmp_path / "typo.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "typo.duckdb").exists()


# -------------------------------------------------------------------------- browser
def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.browser
def test_the_page_in_headless_chromium(world, server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed at /usr/bin/chromium "
                    "(apt-get install chromium)")
    obs = world["train_obs"][0]
    page = f"{server['url']}/?observation={obs}&k=8"
    dom = _chromium(["--dump-dom", page], tmp_path / "profile1").stdout
    for needle in ('id="identify-form"', 'id="photo"', 'id="answer"', 'id="top5"',
                   'id="lookalikes"', "Top 5 species", "most similar observations"):
        assert needle in dom, needle
    shot = tmp_path / "serve.png"
    _chromium([f"--screenshot={shot}", "--window-size=1280,1700", page], tmp_path / "profile2")
    assert shot.is_file()
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 1700)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 200  # text, the answer box and photo thumbnails
    lo, hi = zip(*img.getextrema(), strict=True)
    assert max(hi) - min(lo) > 100  # not blank
    keep = os.environ.get("SPOREPRINT_SCREENSHOTS")
    if keep:  # to refresh docs/screenshots/serve.png
        shutil.copy(shot, Path(keep) / "serve.png")


class Browser:
    """Headless Chromium driven over its DevTools protocol (a minimal WebSocket client on
    a plain socket, so the test needs nothing beyond Chromium itself)."""

    def __init__(self, url: str, profile: Path, width: int = 1280, height: int = 900):
        import base64
        import struct

        self._struct, self._next = struct, 0
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--remote-debugging-port=0",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        self.proc = subprocess.Popen([str(CHROMIUM), *flags, url], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (port_file.is_file() and port_file.read_text().strip()):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("headless Chromium did not open its DevTools port")
                time.sleep(0.2)
            port = int(port_file.read_text().split()[0])
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
                time.sleep(0.2)
            path = urllib.parse.urlparse(pages[0]["webSocketDebuggerUrl"]).path
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                               ).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += self.sock.recv(1)
            assert b" 101 " in head.split(b"\r\n")[0], head
        except BaseException:
            self.close()
            raise

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools connection")
            out += chunk
        return out

    def _recv(self) -> dict:
        data = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = self._struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = self._struct.unpack(">Q", self._recv_exact(8))[0]
            data += self._recv_exact(n)
            if b0 & 0x80:  # the final fragment
                return json.loads(data)

    def call(self, method: str, **params) -> dict:
        self._next += 1
        payload = json.dumps({"id": self._next, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + self._struct.pack(">H", n) if n < 65536
                                else bytes([0x80 | 127]) + self._struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            msg = self._recv()
            if msg.get("id") == self._next:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        got = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression}: {got['exceptionDetails']}")
        return got["result"].get("value")

    def wait(self, expression: str, seconds: float = 60):
        """Polls ``expression`` until it is truthy (a page load in between is fine)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                value = self.js(f"document.readyState === 'complete' && ({expression})")
            except RuntimeError:  # the page navigated while the expression ran
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"the page never made {expression} true; it shows "
                             f"{self.js('location.href')}")

    def close(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


RESULT_TEXT = "document.getElementById('result') ? document.getElementById('result').innerText : ''"


@pytest.mark.browser
def test_the_address_holds_the_query_and_back_restores_it(world, server, tmp_path):
    """An observation query made in the form lands in the address; opening that address
    shows the same answer, and Back/Forward step between queries."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed at /usr/bin/chromium")
    first, second = world["train_obs"][0], world["train_obs"][1]
    browser = Browser(server["url"] + "/", tmp_path / "profile")
    try:
        browser.wait("!!document.getElementById('identify-form')")

        def ask(obs: int, k: str) -> None:
            browser.js(f"document.getElementById('observation').value = '{obs}';"
                       f"document.querySelector('input[name=k]').value = '{k}';"
                       "document.getElementById('identify').click()")
            browser.wait(f"location.search.includes('observation={obs}')")

        ask(first, "4")
        assert browser.js("location.search") == f"?observation={first}&k=4"
        answer = browser.js(RESULT_TEXT)
        assert f"Observation {first}" in answer and "Top 5 species" in answer
        assert browser.js("document.querySelectorAll('#lookalikes .card').length") == 4
        browser.js("location.reload()")
        browser.wait("performance.getEntriesByType('navigation')[0].type === 'reload'")
        assert browser.js(RESULT_TEXT) == answer
        ask(second, "10")  # the default k stays out of the address
        assert browser.js("location.search") == f"?observation={second}"
        browser.js("history.back()")
        browser.wait(f"location.search === '?observation={first}&k=4'")
        assert browser.js(RESULT_TEXT) == answer
        assert browser.js("document.getElementById('observation').value") == str(first)
        browser.js("history.forward()")
        browser.wait(f"location.search === '?observation={second}'")
        assert f"Observation {second}" in browser.js(RESULT_TEXT)
    finally:
        browser.close()


OVERFLOWING = """[...document.querySelectorAll('body *')].filter(e => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && (r.right > innerWidth + 0.5 || r.left < -0.5 ||
                         e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible');
}).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className)"""


@pytest.mark.browser
def test_the_page_fits_a_390_pixel_phone(world, server, tmp_path):
    """At 390 px wide nothing is clipped or scrolls sideways: the answer, the poison
    probability, the reason and the top-5 table wrap inside the screen."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed at /usr/bin/chromium")
    obs = world["train_obs"][2]
    browser = Browser("about:blank", tmp_path / "profile", width=390, height=844)
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844,
                     deviceScaleFactor=1, mobile=True)
        browser.call("Page.navigate", url=f"{server['url']}/?observation={obs}&k=6")
        browser.wait("!!document.getElementById('reason')")
        assert browser.js("innerWidth") == 390
        assert browser.js("document.documentElement.scrollWidth") <= 390
        assert browser.js(OVERFLOWING) == []
        for target in ("reason", "poison-prob", "top5", "answer"):
            right = browser.js(f"document.getElementById('{target}').getBoundingClientRect().right")
            assert right <= 390, target
    finally:
        browser.close()


# ------------------------------------------------------------------- the demo's store
def test_the_demo_store_identifies_a_dropped_photo(demo_world):
    """The app over the store `sporeprint demo` leaves: a held-out photo in, the species,
    its poison probability, the unknown flag and look-alikes whose thumbnails are the
    demo's own training photos out; a poisonous species' photo gets the warning."""
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the dev extra)")
    from fastapi.testclient import TestClient

    from sporeprint.serve import Service, create_app

    demo = demo_world["dir"]
    images = demo / "data" / "images"
    test = pacsv.read_csv(demo / "data" / "test_2024.csv").to_pylist()
    row = next(r for r in test if (images / r["image_path"]).is_file())
    service = Service(demo / "fungi.duckdb")
    try:
        client = TestClient(create_app(service), base_url="http://127.0.0.1")
        assert client.get("/api/info").json()["can_identify"] is True
        got = client.post("/api/identify", data={**{k: v for k, v in metadata_fields(row).items()
                                                    if v is not None}, "k": "4"},
                          files={"photo": ("photo.jpg", (images / row["image_path"]).read_bytes(),
                                           "image/jpeg")})
        assert got.status_code == 200, got.text
        res = got.json()
        answer = res["answer"]
        assert answer["kind"] in ("species", "poison_risk", "unknown")
        assert 0.0 <= answer["poison_prob"] <= 1.0 and 0.0 <= answer["unknown_prob"] <= 1.0
        assert (answer["species"] is not None) == (answer["class_id"] >= 0)
        assert len(res["top5"]) == 5 and all(t["species"] for t in res["top5"])
        assert res["evidence_observation_ids"]
        hits = res["lookalikes"]
        assert len(hits) == 4 and all(h["species"] and h["role"] == "train" for h in hits)
        with FeatureStore(demo / "fungi.duckdb", read_only=True) as fs:
            train_ids = set(fs.sql("SELECT observation_id FROM observations WHERE role = 'train'"
                                   ).column(0).to_pylist())
        assert set(res["evidence_observation_ids"]) <= train_ids
        for h in hits:  # thumbnails of the demo's own photo files
            thumb = client.get(h["image_url"])
            assert thumb.headers["content-type"] == "image/jpeg"
            want = Image.open(images / h["image_path"]).convert("RGB")
            shown = Image.open(io.BytesIO(thumb.content)).convert("RGB")
            assert shown.size == want.size
            diff = np.abs(np.asarray(shown, np.int16) - np.asarray(want, np.int16)).mean()
            assert diff < 8  # the same picture, re-encoded
        # a poisonous species' training photo: the answer names the risk, the page warns
        with FeatureStore(demo / "fungi.duckdb", read_only=True) as fs:
            poisonous = fs.sql(
                "SELECT i.image_path FROM images i JOIN observations o USING (observation_id) "
                "JOIN species s USING (class_id) WHERE o.role = 'train' AND s.poisonous "
                "ORDER BY i.image_id LIMIT 5").column(0).to_pylist()
        warned = []
        for name in poisonous:
            photo = {"photo": ("photo.jpg", (images / name).read_bytes(), "image/jpeg")}
            a = client.post("/api/identify", files=photo).json()["answer"]
            if a["poisonous"]:
                page = client.post("/", files=photo)
                assert page.status_code == 200 and "Do not eat it" in page.text
                warned.append(name)
        assert warned, "no poisonous training photo was answered as poisonous"
    finally:
        service.close()


def test_the_answer_names_only_listed_species_and_unseen_species_say_so(demo_world):
    """The demo's held-out observations: a stored species the run was never trained on
    is labelled so on the page, and a species the answer names (a poison-risk answer
    names the most probable poisonous one, which may rank below the top 5) is always in
    the page's species list, marked."""
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the dev extra)")
    from fastapi.testclient import TestClient

    from sporeprint.serve import Service, create_app

    store = demo_world["dir"] / "fungi.duckdb"
    with FeatureStore(store, read_only=True) as fs:
        rows = fs.sql("SELECT o.observation_id, o.class_id FROM observations o WHERE o.role = "
                      "'val' AND EXISTS (SELECT 1 FROM images i WHERE i.observation_id = "
                      "o.observation_id) ORDER BY o.observation_id LIMIT 120").to_pylist()
    service = Service(store)
    try:
        client = TestClient(create_app(service), base_url="http://127.0.0.1")
        known = set(service.model.classes.tolist())
        unseen = outside = 0
        for r in rows:
            got = client.post("/api/identify", json={"observation_id": r["observation_id"],
                                                     "k": 1})
            if got.status_code != 200:  # an observation without vectors in this space
                continue
            res = got.json()
            stored, answer = res["query"]["stored"], res["answer"]
            assert stored["in_model"] is (r["class_id"] in known)
            listed = [t["class_id"] for t in res["top5"]]
            extra = res["answer_outside_top5"]
            if answer["class_id"] >= 0:
                assert (answer["class_id"] in listed) is (extra is None)
                if extra is not None:
                    assert extra["class_id"] == answer["class_id"] and 0 < extra["prob"] <= 1
                    assert extra["prob"] <= min(t["prob"] for t in res["top5"]) + 1e-6
            else:
                assert extra is None
            marked = [t["class_id"] for t in res["top5"] if t["named_by_answer"]]
            assert marked == ([answer["class_id"]] if extra is None and answer["class_id"] >= 0
                              else [])
            if stored["in_model"] is False or extra is not None:
                html = client.get(f"/?observation={r['observation_id']}&k=1").text
                table = html[html.index('id="top5"'):html.index("</table>")]
                if answer["species"]:
                    assert answer["species"] in table and "⚠ the answer" in table
                if extra is not None:
                    outside += 1
                    assert 'id="answer-outside-top5"' in table
                if stored["in_model"] is False:
                    unseen += 1
                    assert (f"<em>{stored['species']}</em> — <strong id=\"not-in-model\">not a "
                            "species this model was trained on") in html
        assert unseen, "no held-out observation of a species the run never saw"
    finally:
        service.close()
