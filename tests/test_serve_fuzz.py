"""`sporeprint serve` never answers 500: out-of-range numbers, malformed vectors, deep
JSON, unknown routes and methods, bad Host headers, oversized and undecodable photos
each get a 4xx with the API's one error shape, ``{"error": str}``, naming no path on
the server; then a seeded fuzz run of a few hundred malformed requests against the real
server on a small real store (photos embedded by a tiny DINOv2), which must leave the
store file's bytes unchanged."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import struct
import sys
import tempfile
import urllib.parse
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_world_copy
from test_serve import serving

from store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
JSON = "application/json"
SEED = 20261204
N_FUZZ = 300


@pytest.fixture(scope="module")
def world(photo_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-fuzz")
    store, files, _ = photo_world_copy(photo_world, root / "world")
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    with FeatureStore(store, read_only=True) as fs:
        obs = fs.sql("SELECT observation_id FROM observations WHERE role = 'val' "
                     "ORDER BY observation_id LIMIT 5").column(0).to_pylist()
        image_ids = fs.sql("SELECT image_id FROM images ORDER BY image_id LIMIT 5"
                           ).column(0).to_pylist()
    photos = sorted(Path(files["images"]).glob("*.*"))[:5]
    with serving(store, log_level="critical") as (_, port, service):
        yield {"root": root, "store": store, "digest": digest, "port": port, "obs": obs,
               "image_ids": image_ids, "photos": [p.read_bytes() for p in photos],
               "dim": service.model.index.dim}


def send(world, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
         host: str | None = None) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of one request, sent as written."""
    conn = http.client.HTTPConnection("127.0.0.1", world["port"], timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{world['port']}")
        if ctype is not None:
            conn.putheader("Content-Type", ctype)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.getheader("content-type", ""), r.read()
    finally:
        conn.close()


def server_paths(world) -> list[str]:
    return [str(world["root"]), str(ROOT), sys.prefix, tempfile.gettempdir() + "/",
            "sporeprint-upload"]


def check_answer(world, method: str, path: str, status: int, ctype: str, body: bytes) -> None:
    """What every answer keeps: no 5xx, no traceback; an error is ``{"error": str}`` with
    no path on the server (the page answers its own errors as HTML)."""
    what = f"{method} {path[:80]} -> {status} {body[:300]!r}"
    assert status < 500, what
    text = body.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text, what
    if status < 400:
        return
    page = path.split("?")[0] == "/" and method in ("GET", "POST")
    if page and ctype.startswith("text/html"):
        assert "sporeprint-upload" not in text, what
        return
    assert ctype.startswith("application/json"), what
    got = json.loads(body)
    assert isinstance(got, dict) and set(got) == {"error"} and isinstance(got["error"], str), what
    assert got["error"].strip(), what
    for root in server_paths(world):
        assert root not in got["error"], what


def call(world, method: str, path: str, body=None, ctype=None, host=None):
    """Send, check the answer's invariants, and return ``(status, parsed JSON or text)``."""
    if isinstance(body, (dict, list)):
        body, ctype = json.dumps(body).encode(), ctype or JSON
    elif isinstance(body, str):
        body = body.encode()
    status, got_type, raw = send(world, method, path, body, ctype, host)
    check_answer(world, method, path, status, got_type, raw)
    if got_type.startswith("application/json"):
        return status, json.loads(raw)
    return status, raw.decode("utf-8", "replace")


def multipart(fields: dict, photo: bytes | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n").encode()
    if photo is not None:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
                f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode() + photo + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (and holds none)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------- each attack, one by one
BIG = "9" * 400


@pytest.mark.parametrize("method,path,body,fragment", [
    ("GET", "/api/search?observation=9223372036854775808", None, "observation id"),
    ("GET", "/api/search?observation=-9223372036854775809", None, "observation id"),
    ("POST", "/api/identify", {"observation_id": 1180591620717411303424}, "observation id"),
    ("POST", "/api/identify", {"observation_id": True}, "observation id"),
    ("POST", "/api/identify", {"observation_id": "OBS", "k": int(BIG)}, "k 9999"),
    ("POST", "/api/identify", {"observation_id": "OBS", "k": True}, "k True"),
    ("GET", f"/api/search?observation=OBS&k={BIG}", None, "outside 1..100"),
    ("POST", "/api/identify", {"vector": ["a", "b"]}, "not a list of numbers"),
    ("POST", "/api/identify", {"vector": [[1, 2], [3]]}, "not a list of numbers"),
    ("POST", "/api/identify", {"vector": {"a": 1}}, "not a list of numbers"),
    ("POST", "/api/identify", {"vector": [1, 2, 3]}, "dimension"),
    ("POST", "/api/identify", "[" * 100_000 + "]" * 100_000, "JSON"),
    ("POST", "/api/identify", '{"a":' * 100_000 + "1" + "}" * 100_000, "JSON"),
    ("POST", "/api/identify", {"observation_id": "OBS", "habitat": [[[[["x"]]]]]}, "nests"),
])
def test_bad_numbers_vectors_and_deep_json_get_400(world, method, path, body, fragment):
    obs = str(world["obs"][0])
    path = path.replace("OBS", obs)
    if isinstance(body, dict) and body.get("observation_id") == "OBS":
        body["observation_id"] = int(obs)
    ctype = JSON if isinstance(body, str) else None
    status, got = call(world, method, path, body, ctype)
    assert status == 400 and fragment in got["error"], got


def test_the_page_answers_an_out_of_range_id_with_its_error(world):
    status, html = call(world, "GET", "/?observation=9223372036854775808")
    assert status == 400 and "not a whole number" in html


@pytest.mark.parametrize("scale", [1e30, 1e300, 1e-30, 1e-300])
def test_a_vector_at_an_extreme_scale_is_named_by_its_length(world, scale):
    v = np.random.default_rng(0).standard_normal(world["dim"])
    status, got = call(world, "POST", "/api/identify",
                       {"vector": (scale * v / np.linalg.norm(v)).tolist()})
    assert status == 400 and "length" in got["error"] and "unit length" in got["error"]
    assert "zero" not in got["error"]
    status, got = call(world, "POST", "/api/identify", {"vector": [0.0] * world["dim"]})
    assert status == 400 and "all zeros" in got["error"]
    status, _ = call(world, "POST", "/api/identify", {"vector": (1e3 * v).tolist()})
    assert status == 200  # a large but normalisable vector is answered


def test_routes_methods_and_hosts_answer_in_the_one_error_shape(world):
    status, got = call(world, "PUT", "/api/identify", "{}", JSON)
    assert status == 405 and "PUT" in got["error"] and "POST" in got["error"]
    status, got = call(world, "GET", "/api/identify")
    assert status == 405
    status, got = call(world, "GET", "/no/such/page")
    assert status == 404 and "/api/identify" in got["error"]
    status, got = call(world, "GET", "/api/info", host="attacker.example")
    assert status == 400 and "attacker.example" in got["error"]
    status, got = call(world, "GET", "/api/info", host=f"localhost:{world['port']}")
    assert status == 200
    status, got = call(world, "GET", f"/images/{world['image_ids'][0]}?size=abc")
    assert status == 400 and "size" in got["error"]
    status, got = call(world, "POST", "/api/identify", b"abc", "multipart/form-data")
    assert status == 400 and "multipart" in got["error"]


def test_a_photo_over_pillows_own_limit_is_413_not_400(world):
    for width, height in ((20_000, 10_000), (15_000, 15_000)):  # 200 MP, 225 MP
        body, ctype = multipart({}, png_header(width, height))
        status, got = call(world, "POST", "/api/identify", body, ctype)
        assert status == 413 and f"{width * height:,} pixels" in got["error"], got


def test_a_photo_that_fails_to_decode_names_no_server_path(world):
    photo = world["photos"][0]
    for broken in (photo[: len(photo) // 2], photo[:200] + bytes(len(photo) - 200)):
        body, ctype = multipart({}, broken)
        status, got = call(world, "POST", "/api/identify", body, ctype)  # checks the paths
        assert status == 400 and "photo" in got["error"], got
    body, ctype = multipart({}, photo)
    assert call(world, "POST", "/api/identify", body, ctype)[0] == 200


# ------------------------------------------------------------------------ the fuzz run
class Mutator:
    """Seeded generator of malformed requests for the API's routes."""

    KEYS = ["observation_id", "observation", "vector", "k", "month", "day", "date", "habitat",
            "substrate", "latitude", "longitude", "near", "radius_km", "role", "poisonous",
            "species", "genus", "split", "date_from", "date_to", "photo", "x", ""]

    def __init__(self, seed: int, world):
        self.r = random.Random(seed)
        self.world = world

    def number(self):
        r = self.r
        return r.choice([0, -1, 1, 7, 101, 2 ** 63, -(2 ** 63) - 1, 2 ** 64, int("9" * 300),
                         1.5, -0.0, 1e308, 1e-320, float("nan"), float("inf"), float("-inf"),
                         r.choice(self.world["obs"]), r.randint(-10 ** 12, 10 ** 12),
                         r.uniform(-1e6, 1e6)])

    def text(self):
        r = self.r
        alphabet = "ab09-_.,:/\\%\"'<>{}[] \t\n\x00é漢😀"
        return r.choice(["", " ", "yes", "no", "all", "train", "2021-13-40", "1e400", "NaN",
                         "55.7,12.5", "../../etc/passwd", "A" * r.choice([100, 20_000]),
                         "".join(r.choice(alphabet) for _ in range(r.randint(1, 40)))])

    def value(self, depth: int = 0):
        r = self.r
        kind = r.randrange(6 if depth < 3 else 3)
        if kind == 0:
            return self.number()
        if kind == 1:
            return self.text()
        if kind == 2:
            return r.choice([None, True, False])
        if kind == 3:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if kind == 4:
            return {self.text()[:20]: self.value(depth + 1) for _ in range(r.randint(0, 3))}
        return self.deep(r.randint(2, 3000))

    def deep(self, depth: int):
        return json.loads("[" * depth + "]" * depth) if depth < 500 else {"deep": depth}

    def vector(self):
        r, dim = self.r, self.world["dim"]
        v = [r.gauss(0, 1) for _ in range(dim)]
        choice = r.randrange(6)
        if choice == 0:
            v[r.randrange(dim)] = self.value()
        elif choice == 1:
            v = v[: r.randrange(dim)]
        elif choice == 2:
            v = [x * r.choice([1e-300, 1e-40, 1e20, 1e40, 1e300]) for x in v]
        elif choice == 3:
            v = [v, v]
        elif choice == 4:
            v = [v]
        return v

    def fields(self) -> dict:
        r = self.r
        out = {}
        for _ in range(r.randint(0, 5)):
            key = r.choice(self.KEYS)
            out[key] = self.vector() if key == "vector" else self.value()
        if r.random() < 0.5:
            out["observation_id"] = r.choice(self.world["obs"])
        return out

    def photo(self) -> bytes:
        r = self.r
        real = r.choice(self.world["photos"])
        choice = r.randrange(6)
        if choice == 0:
            return r.randbytes(r.randint(1, 4000))
        if choice == 1:
            return real[: r.randint(1, len(real) - 1)]
        if choice == 2:
            b = bytearray(real)
            for _ in range(r.randint(1, 20)):
                b[r.randrange(len(b))] = r.randrange(256)
            return bytes(b)
        if choice == 3:
            return png_header(r.choice([1, 60_000, 2 ** 31 - 1]), r.choice([1, 5_000, 100_000]))
        if choice == 4:
            return b"GIF89a" + r.randbytes(50)
        return real

    def request(self) -> tuple[str, str, bytes | None, str | None, str | None]:
        r = self.r
        kind = r.randrange(10)
        if kind == 0:  # a JSON object of random fields
            return "POST", "/api/identify", json.dumps(self.fields()).encode(), JSON, None
        if kind == 1:  # a JSON value that is not an object, or not JSON at all
            body = r.choice([json.dumps(self.value()).encode(), r.randbytes(r.randint(0, 200)),
                             json.dumps(self.fields()).encode()[: r.randint(0, 60)]])
            return "POST", "/api/identify", body, JSON, None
        if kind == 2:  # a wrong content type
            ctype = r.choice(["text/plain", "application/x-www-form-urlencoded", "image/jpeg",
                              "multipart/form-data", "multipart/form-data; boundary=",
                              "application/json; charset=utf-16", "", "application/jsonx"])
            return "POST", r.choice(["/api/identify", "/"]), r.randbytes(r.randint(0, 300)), \
                ctype, None
        if kind in (3, 4):  # multipart with a mutated photo, maybe cut short
            fields = {k: v for k, v in self.fields().items() if k not in ("photo", "")}
            fields = {k: json.dumps(v) if not isinstance(v, str) else v[:1000]
                      for k, v in fields.items()}
            body, ctype = multipart(fields, self.photo())
            if r.random() < 0.3:
                body = body[: r.randint(0, len(body))]
            return "POST", r.choice(["/api/identify", "/"]), body, ctype, None
        if kind == 5:  # the search route's query string
            query = {k: json.dumps(v) if not isinstance(v, str) else v
                     for k, v in self.fields().items() if k != "vector"}
            if "observation_id" in query:
                query["observation"] = query.pop("observation_id")
            return "GET", "/api/search?" + urllib.parse.urlencode(query), None, None, None
        if kind == 6:  # the page with a query string
            query = {"observation": json.dumps(self.number()), **{
                k: str(v) for k, v in self.fields().items() if k not in ("vector", "")}}
            return "GET", "/?" + urllib.parse.urlencode(query), None, None, None
        if kind == 7:  # thumbnails by any id and size
            image = r.choice([*map(str, self.world["image_ids"]), "-1", "abc", "9" * 30, "1.5"])
            size = r.choice(["128", "256", "0", "-1", "abc", "9" * 30, "1e3", ""])
            return "GET", f"/images/{image}?size={urllib.parse.quote(size)}", None, None, None
        if kind == 8:  # other methods and paths
            method = r.choice(["PUT", "DELETE", "PATCH", "GET", "POST", "OPTIONS"])
            path = r.choice(["/api/identify", "/api/search", "/api/info", "/api/nope",
                             "/static/../app.py", "/images/", "/x" * 50, "/%00", "/api/info?%ff"])
            return method, path, b"{}" if method in ("PUT", "PATCH", "POST") else None, JSON, None
        host = r.choice(["evil.example", "", "127.0.0.1.evil.example", "[::1", ":80",
                         "localhost:99999", "LOCALHOST", "\u00e9"])  # the Host check
        return "GET", "/api/info", None, None, host


def test_a_seeded_fuzz_run_gets_no_500_and_leaves_the_store_unchanged(world):
    mutate = Mutator(SEED, world)
    statuses: dict[int, int] = {}
    # one request of each refusal the random run may or may not draw, then the random run
    body, ctype = multipart({}, png_header(60_000, 5_000))
    anchors = [("POST", "/api/identify", body, ctype, None),
               ("GET", "/api/nope", None, None, None),
               ("DELETE", "/api/identify", None, JSON, None)]
    for i in range(len(anchors) + N_FUZZ):
        method, path, body, ctype, host = anchors[i] if i < len(anchors) else mutate.request()
        if host is not None:
            host = host.encode("utf-8").decode("latin-1")
        status, got_type, raw = send(world, method, path, body, ctype, host)
        check_answer(world, method, path, status, got_type, raw)
        statuses[status] = statuses.get(status, 0) + 1
    # the run reached the answers as well as the refusals
    assert statuses.get(200, 0) > 10 and statuses.get(400, 0) > 50, statuses
    assert {404, 405, 413} <= set(statuses), statuses
    assert hashlib.sha256(world["store"].read_bytes()).hexdigest() == world["digest"]
