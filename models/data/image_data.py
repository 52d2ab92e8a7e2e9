"""``ImageData``: images named in a list file (``src/caffe/layers/image_data_layer.cpp``, ``util/io.cpp``
ReadImageToCVMat), and the writer of such a folder.

Each line is ``PATH LABEL`` (split at the last space, so paths may hold spaces); an image is read from
``root_folder + PATH`` (string concatenation, as Caffe does) with OpenCV in colour (BGR) or grey (``is_color``),
resized to ``new_height x new_width`` with ``cv::resize``'s bilinear default when both are set, then
transformed. With ``shuffle`` the list is shuffled at setup and again each time it wraps around.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.atomic import write_bytes, write_text
from models.errors import NetDefinitionError

from .datum import IMREAD_COLOR, IMREAD_GRAYSCALE, encode_image, hwc_to_chw
from .deps import require
from .errors import EmptySourceError, SourceShapeError
from .paths import resolve
from .source import DataSource
from .transform import DataTransformer


def read_image_list(path: Path, where: str) -> list:
    """``[(path, label), ...]`` of an ImageData list file; blank lines are skipped.

    Raises
    ------
    EmptySourceError
        No lines.
    DataSourceError
        A line whose last field is not an integer label (Caffe's ``atoi`` would read 0).
    """
    lines = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        name, sep, label = line.rpartition(" ")
        try:
            lab = int(label)
        except ValueError:
            lab = None
        if not sep or lab is None:
            raise SourceShapeError(f"{where}: {path}:{n}: expected 'PATH LABEL' with an integer label, got "
                                   f"{line!r}")
        lines.append((name, lab))
    if not lines:
        raise EmptySourceError(f"{where}: image list '{path}' is empty")
    return lines


class ImageDataSource(DataSource):
    """An ``ImageData`` layer: tops ``data`` (N, C, H, W) and ``label`` (N,).

    Raises
    ------
    MissingSourceError
        The list file, or an image it names, does not exist.
    EmptySourceError, SourceShapeError, MissingDependencyError
        An empty list; an image OpenCV cannot read, or that the transform cannot take; OpenCV not installed.
    """

    top_range = (2, 2)

    def __init__(self, layer, phase, base_dir=None, seed=None):
        super().__init__(layer, phase, base_dir, seed)
        p = layer.image_data_param
        self.cv2 = require("cv2", self.where)
        self.batch_size = self._check_batch_size(p.batch_size, "image_data_param")
        self.new_height, self.new_width = int(p.new_height), int(p.new_width)
        if (self.new_height > 0) != (self.new_width > 0):
            raise NetDefinitionError(f"{self.where}: new_height and new_width must be set together "
                                     f"(got {self.new_height} and {self.new_width})")
        self.is_color = p.is_color
        self.root_folder = p.root_folder
        self.shuffle = p.shuffle
        self.list_path = resolve(p.source, base_dir, where=self.where, what="source")
        self.lines = read_image_list(self.list_path, self.where)
        transform_ss, shuffle_ss, skip_ss = self.seeds.spawn(3)
        self.shuffle_rng = np.random.default_rng(shuffle_ss)
        self.transformer = DataTransformer(layer.transform_param, self.phase, np.random.default_rng(transform_ss),
                                           self.where, base_dir)
        if self.shuffle:
            self._shuffle()
        self.pos = 0
        if p.rand_skip:
            skip = int(np.random.default_rng(skip_ss).integers(p.rand_skip))
            if skip >= len(self.lines):
                raise SourceShapeError(f"{self.where}: rand_skip draws {skip}, but '{self.list_path}' has only "
                                       f"{len(self.lines)} images")
            self.pos = skip
        first = self.read(self.lines[self.pos][0])
        self._shape = self.transformer.output_shape(first.shape, self._what(self.lines[self.pos][0]))

    def _shuffle(self) -> None:
        self.lines = [self.lines[i] for i in self.shuffle_rng.permutation(len(self.lines))]

    def _what(self, name: str) -> str:
        return f"image '{self.root_folder + name}' of '{self.list_path}'"

    def read(self, name: str) -> np.ndarray:
        """One image as (C, H, W) uint8, as ReadImageToCVMat reads it (colour: BGR)."""
        full = self.root_folder + name
        path = Path(full)
        if not path.exists():
            path = resolve(full, self.base_dir, self.list_path.parent, where=self.where,
                           what=f"image (listed in '{self.list_path}')")
        img = self.cv2.imread(str(path), IMREAD_COLOR if self.is_color else IMREAD_GRAYSCALE)
        if img is None:
            raise SourceShapeError(f"{self.where}: could not load {self._what(name)} (not an image OpenCV reads)")
        if self.new_height > 0:
            img = self.cv2.resize(img, (self.new_width, self.new_height))
        return hwc_to_chw(img)

    def shapes(self) -> dict:
        return {self.tops[0]: (self.batch_size,) + self._shape, self.tops[1]: (self.batch_size,)}

    def next_batch(self) -> dict:
        images, names = [], []
        labels = np.empty(self.batch_size, np.float32)
        for i in range(self.batch_size):
            name, labels[i] = self.lines[self.pos]
            images.append(self.read(name))
            names.append(self._what(name))
            self.pos += 1
            if self.pos >= len(self.lines):
                self.pos = 0
                if self.shuffle:
                    self._shuffle()
        same = all(im.shape == images[0].shape for im in images)
        data = self.transformer(np.stack(images) if same else images, None if same else names)
        return {self.tops[0]: data, self.tops[1]: labels}


def write_image_list(folder, images, labels, encoding: str = "png", names=None) -> Path:
    """Write each ``(C, H, W)`` uint8 image as a file in ``folder`` and a list file ``folder/list.txt`` of
    ``NAME LABEL`` lines (an ImageData source with ``root_folder: "FOLDER/"``, or relative to the list's folder).

    Parameters
    ----------
    folder : path-like
    images : (N, C, H, W) uint8 array
        C = 1 (grey) or 3 (BGR, OpenCV's order).
    labels : (N,) int array
    encoding : "png" (lossless, default) or "jpg"
    names : sequence of str, optional
        File names; default ``"%08d.png"``.

    Returns
    -------
    Path
        The list file. Files are written atomically; equal inputs give identical bytes.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, C, H, W) uint8, got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be (N,) = ({len(images)},), got shape {labels.shape}")
    folder = Path(folder)
    names = list(names) if names is not None else [f"{i:08d}.{encoding}" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    for name, img in zip(names, images):
        write_bytes(folder / name, encode_image(img, encoding))
    list_path = folder / "list.txt"
    write_text(list_path, "".join(f"{n} {int(l)}\n" for n, l in zip(names, labels)))
    return list_path
