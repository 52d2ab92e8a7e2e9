"""models/fetch.py against a local HTTP server on 127.0.0.1 (no external network)."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import threading

import pytest

from models import fetch

PAYLOAD = b"\x0a\x05hello" + bytes(range(256)) * 400  # arbitrary bytes standing in for a caffemodel
GOOD_SHA1 = hashlib.sha1(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        if self.path == "/good.caffemodel":
            body, length = PAYLOAD, len(PAYLOAD)
        elif self.path == "/corrupt.caffemodel":
            body = bytearray(PAYLOAD)
            body[100] ^= 0xFF
            body, length = bytes(body), len(PAYLOAD)
        elif self.path == "/truncated.caffemodel":
            body, length = PAYLOAD[: len(PAYLOAD) // 2], len(PAYLOAD)
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _run(argv):
    p = argparse.ArgumentParser()
    fetch.add_arguments(p)
    return fetch.main(p.parse_args(argv + ["--no-progress", "--timeout", "10"]))


def test_published_checksums_are_the_model_zoo_ones():
    assert fetch.SOURCES["googlenet"].sha1 == "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
    assert fetch.SOURCES["googlenet"].url == "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
    assert fetch.SOURCES["vgg16"].sha1 is None  # VGG publishes none: recorded instead


def test_verified_download_and_provenance(server, tmp_path):
    rc = _run([str(tmp_path), "--only", "googlenet", "--url", f"googlenet={server}/good.caffemodel",
               "--sha1", f"googlenet={GOOD_SHA1}"])
    assert rc == 0
    assert (tmp_path / "bvlc_googlenet.caffemodel").read_bytes() == PAYLOAD
    prov = json.loads((tmp_path / fetch.PROVENANCE).read_text())["weights"]
    assert prov[0]["sha1"] == GOOD_SHA1 and prov[0]["checksum"].startswith("verified")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bvlc_googlenet.caffemodel", fetch.PROVENANCE]


def test_unpublished_checksum_is_recorded(server, tmp_path):
    rc = _run([str(tmp_path), "--only", "vgg16", "--url", f"vgg16={server}/good.caffemodel"])
    assert rc == 0
    prov = json.loads((tmp_path / fetch.PROVENANCE).read_text())["weights"]
    assert prov[0]["sha1"] == GOOD_SHA1 and prov[0]["published_sha1"] is None
    assert "recorded" in prov[0]["checksum"]


@pytest.mark.parametrize("path", ["/corrupt.caffemodel", "/truncated.caffemodel"])
def test_bad_download_refused_and_nothing_left(server, tmp_path, path, capsys):
    rc = _run([str(tmp_path), "--only", "googlenet", "--url", f"googlenet={server}{path}",
               "--sha1", f"googlenet={GOOD_SHA1}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("does not match" in err or "truncated" in err or "interrupted" in err)
    assert list(tmp_path.iterdir()) == []  # no final file, no .part file, no provenance


def test_existing_file_with_wrong_checksum_is_refused(tmp_path, capsys):
    (tmp_path / "bvlc_googlenet.caffemodel").write_bytes(b"not the model")
    rc = _run([str(tmp_path), "--only", "googlenet"])  # the real published SHA1; no network touched
    assert rc == 2 and "published SHA1" in capsys.readouterr().err
