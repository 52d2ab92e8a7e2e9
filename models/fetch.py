"""``python -m models fetch-weights DIR``: download the ImageNet caffemodels the paper fine-tunes and uses as feature
extractors (Zhu et al. 2019, "Transfer Learning" and "Off-the-shelf deep features": GoogLeNet and VGGNet pre-trained
on ImageNet).

- BVLC GoogLeNet: the BVLC model zoo (caffe/models/bvlc_googlenet/readme.md) publishes the URL and a SHA1; a
  download whose SHA1 differs is refused.
- VGG16 (VGG_ILSVRC_16_layers, Simonyan & Zisserman): its page publishes no checksum; we record the SHA1 of what we
  got in ``DIR/weights_provenance.json`` so a run can cite exactly which file it used.

A download goes to a temp file in DIR and is moved into place (``os.replace``) only when complete and verified:
an interrupted, truncated or corrupted download leaves nothing behind under the final name.
This is the only code in the project that touches the network, and only when the user runs this command.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from models.errors import CaffeError


class FetchError(CaffeError):
    """A download that failed, was truncated, or does not match its published checksum."""


@dataclass(frozen=True)
class WeightsSource:
    name: str
    filename: str
    url: str
    sha1: str | None  # published checksum, or None when the publisher gives none


SOURCES = {
    "googlenet": WeightsSource(
        "googlenet", "bvlc_googlenet.caffemodel", "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        "405fc5acd08a3bb12de8ee5e23a96bec22f08204"),
    "vgg16": WeightsSource(
        "vgg16", "VGG_ILSVRC_16_layers.caffemodel",
        "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel", None),
}

PROVENANCE = "weights_provenance.json"


def sha1_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest_tmp: Path, progress: bool, timeout: float) -> tuple[str, int]:
    """Stream ``url`` into ``dest_tmp``; returns (sha1, bytes). Raises FetchError on HTTP errors or truncation."""
    h = hashlib.sha1()
    n = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest_tmp, "wb") as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total is not None else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, file=sys.stderr)
            while True:
                try:
                    block = resp.read(1 << 20)
                except Exception as exc:  # http.client.IncompleteRead and friends
                    raise FetchError(f"{url}: download interrupted after {n} bytes ({exc})") from exc
                if not block:
                    break
                out.write(block)
                h.update(block)
                n += len(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
            out.flush()
            os.fsync(out.fileno())
            if total is not None and n != total:
                raise FetchError(f"{url}: truncated download, got {n} of {total} bytes")
    except urllib.error.URLError as exc:
        raise FetchError(f"{url}: {exc}") from exc
    return h.hexdigest(), n


def fetch(source: WeightsSource, dest_dir: str | os.PathLike, progress: bool = True, timeout: float = 60.0,
          force: bool = False) -> dict:
    """Download one caffemodel into ``dest_dir``; returns its provenance record.

    An existing file is kept (and re-verified) unless ``force``. A checksum mismatch raises FetchError and leaves
    neither the final file nor a temp file.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / source.filename
    if final.exists() and not force:
        got, size = sha1_of(final), final.stat().st_size
        if source.sha1 is not None and got != source.sha1:
            raise FetchError(
                f"{final}: existing file has SHA1 {got}, the published SHA1 is {source.sha1}; "
                "delete it or pass --force")
    else:
        from models.atomic import atomic_path

        with atomic_path(final, suffix=".part") as tmp:
            got, size = _download(source.url, tmp, progress, timeout)
            if source.sha1 is not None and got != source.sha1:
                raise FetchError(
                    f"{source.url}: SHA1 {got} does not match the published {source.sha1}; download refused")
    return {
        "name": source.name, "file": source.filename, "url": source.url, "sha1": got, "bytes": size,
        "checksum": "verified against published SHA1" if source.sha1 else "no published checksum; SHA1 recorded",
        "published_sha1": source.sha1, "fetched_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_provenance(dest_dir: Path, records: list[dict]) -> Path:
    """Merge records into ``DIR/weights_provenance.json`` (atomically)."""
    path = Path(dest_dir) / PROVENANCE
    existing = {}
    if path.exists():
        try:
            existing = {r["name"]: r for r in json.loads(path.read_text())["weights"]}
        except (ValueError, KeyError):
            existing = {}
    for r in records:
        existing[r["name"]] = r
    from models.atomic import write_json

    write_json(path, {"weights": sorted(existing.values(), key=lambda r: r["name"])}, indent=1, sort_keys=False)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to put the caffemodels in (later passed as --weights-dir)")
    parser.add_argument("--only", choices=sorted(SOURCES), action="append",
                        help="fetch only this model (repeatable); default: all")
    parser.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                        help="override a model's download address (a mirror)")
    parser.add_argument("--sha1", action="append", default=[], metavar="NAME=HEX",
                        help="expected SHA1 for a model (overrides the published one)")
    parser.add_argument("--force", action="store_true", help="download again even if the file exists")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    parser.add_argument("--no-progress", action="store_true")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SOURCES:
            raise FetchError(f"--{what} {item!r}: expected NAME={what.upper()} with NAME in {sorted(SOURCES)}")
        out[name] = value
    return out


def main(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise FetchError(f"--timeout {args.timeout}: must be a positive number of seconds")
    try:
        urls, sums = _pairs(args.url, "url"), _pairs(args.sha1, "sha1")
        records = []
        for name in args.only or sorted(SOURCES):
            src = SOURCES[name]
            src = WeightsSource(src.name, src.filename, urls.get(name, src.url), sums.get(name, src.sha1))
            rec = fetch(src, args.dir, progress=not args.no_progress, timeout=args.timeout, force=args.force)
            records.append(rec)
            print(f"{rec['file']}: {rec['bytes']} bytes, SHA1 {rec['sha1']} ({rec['checksum']})")
        write_provenance(Path(args.dir), records)
    except FetchError as exc:
        print(f"fetch-weights: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover - the lead's models/cli.py dispatches here
    p = argparse.ArgumentParser(prog="python -m models fetch-weights")
    add_arguments(p)
    sys.exit(main(p.parse_args()))
