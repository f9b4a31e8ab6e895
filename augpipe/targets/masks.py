"""Mask PNGs, the one place they are decoded and encoded: semantic masks (class indices, mode L
or P with the source's palette) and instance masks (1-bit grey, mode "1": white inside). 8- and
1-bit grey PNGs are inflated by zlib-ng when their rows are unfiltered or filtered by Sub
(OpenCV's files and ours), else read by OpenCV (a fifth of PIL's time); any other by PIL: OpenCV
expands palette PNGs into colours even with IMREAD_UNCHANGED. All are written by `png`: unfiltered
rows, deflated by zlib-ng at level 1."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from augpipe.errors import SkipInput


def read_mask(data: bytes, name: str, subject: str | None = None) -> tuple[np.ndarray, bytes | None]:
    """Class indices as stored (a palette PNG's indices, not its colours), and the palette.
    `subject`: what an error calls it (default "mask NAME")."""
    subject = subject or f"mask {name}"
    grey = grey_png_pixels(data)
    if grey is not None:
        return grey, None
    if bytes(data[:8]) == PNG_SIGNATURE and bytes(data[24:26]) == b"\x08\x03":  # 8-bit palette
        plain = _plain_png(data)
        if plain is not None:
            return plain
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            palette = bytes(im.getpalette() or []) if im.mode == "P" else None
            if im.mode in ("P", "L"):
                mask = np.asarray(im, dtype=np.uint8)
            elif im.mode in ("1", "I", "I;16", "I;16B", "I;16L"):
                values = np.asarray(im)
                low, high = int(values.min(initial=0)), int(values.max(initial=0))
                if low < 0 or high > 255:  # a 32-bit −2 would wrap to 254, another class
                    raise SkipInput(f"{subject} has values outside 0..255 ({low}..{high})")
                mask = values.astype(np.uint8)
            else:
                # no file name: one reason for every such mask, counted once in the run's summary
                raise SkipInput(f"a mask is {im.mode}, not class indices (mode L or P): save each class's "
                                "index as a grey (L) or palette (P) PNG, not its colour")
    except (UnidentifiedImageError, OSError, ValueError):
        raise SkipInput(f"{subject} is not a readable image") from None
    return np.ascontiguousarray(mask), palette


def grey_png_pixels(data) -> np.ndarray | None:
    """An 8- or 1-bit grey PNG's pixels as PIL reads them (mode L, or "1" as 0 and 1), by OpenCV;
    None for any other file, or one OpenCV cannot read as a single uint8 channel (PIL then reads
    it, or says why not). `data`: bytes or a uint8 buffer."""
    head = bytes(data[:26])
    if head[:8] != PNG_SIGNATURE or head[24:26] not in (b"\x08\x00", b"\x01\x00"):  # IHDR: depth, grey
        return None
    width, height = struct.unpack(">II", head[16:24])
    plain = _plain_png(data) if width * height > SMALL else None
    if plain is not None:
        return plain[0]
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # no EXIF turn, as PIL
    if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
        return None
    return cv2.threshold(mask, 0, 1, cv2.THRESH_BINARY)[1] if head[24] == 1 else mask  # libpng: 1 -> 255


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that change nothing OpenCV or PIL give for the pixels; any other (sBIT, gAMA, ...) goes to them.
_PLAIN_CHUNKS = frozenset((b"IDAT", b"IEND", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"tIME"))
_PALETTE_CHUNKS = _PLAIN_CHUNKS | {b"PLTE", b"tRNS"}  # a palette's transparency: not its indices
_SUB = 1  # the filter whose rows are undone here; None (0) needs nothing, any other is libpng's
MAX_SIDE = 1_000_000  # libpng's limit on a side as OpenCV builds it: a larger image is theirs to refuse
# OpenCV's one call outruns the inflater's steps up to about 80 × 80 px (ours and OpenCV's own
# files), alone and far more on threads: it lets go of the GIL once, the inflater's steps many times
SMALL = 64 * 64
MAX_PIXELS = 2**26  # past this (PIL's bomb warning is at 89M pixels) PIL or OpenCV reads it, or refuses


def _plain_png(data) -> tuple[np.ndarray, bytes | None] | None:
    """(pixels, palette) of a non-interlaced 8- or 1-bit grey PNG, or an 8-bit palette one, whose
    rows are unfiltered or filtered by Sub (OpenCV's files, PIL's palette ones, ours): as
    OpenCV reads a grey one (1-bit as 0 and 1) and PIL a palette one (its indices, and the palette
    `getpalette` gives); inflated by zlib-ng (a twentieth of libpng's time on OpenCV's run-length
    files: 0.7 ms at 320 px), the filters undone a whole image at a time by OpenCV's integral.
    None for any other PNG, or any that does not check out (CRCs, lengths): OpenCV or PIL then
    reads or refuses it."""
    try:
        view = memoryview(data).cast("B")
    except (TypeError, ValueError, BufferError):  # not one run of bytes: OpenCV or PIL says why
        return None
    if len(view) < 57:  # signature, IHDR, IEND
        return None
    width, height, depth, colour, compression, method, interlace = struct.unpack(">IIBBBBB", view[16:29])
    if view[8:16] != b"\x00\x00\x00\x0dIHDR" or (depth, colour) not in ((8, 0), (1, 0), (8, 3)) \
            or (compression, method, interlace) != (0, 0, 0) or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) \
            or width * height > MAX_PIXELS:
        return None
    chunks = _chunks(view, _PALETTE_CHUNKS if colour == 3 else _PLAIN_CHUNKS)
    if chunks is None:
        return None
    idat, palette = chunks
    if colour == 3 and (palette is None or not 3 <= len(palette) <= 768 or len(palette) % 3):
        return None
    raw = _inflated(idat, height, (width * depth + 7) // 8 + 1)
    if raw is None:
        return None
    pixels = _unfiltered(raw[:, 0], raw[:, 1:])
    if depth == 1:
        pixels = np.unpackbits(pixels, axis=1, count=width)  # 0 and 1, as PIL's mode "1" reads them
    return pixels, palette


def _chunks(view: memoryview, allowed: frozenset) -> tuple[bytes | memoryview, bytes | None] | None:
    """A PNG's image data (its IDAT chunks, one after another, joined) and its palette (PLTE,
    before them), every chunk's CRC checked and each of a kind allowed; None otherwise, or with
    no image data or no end."""
    ng = zlib_ng()
    idat, palette, at = [], None, 8
    while at + 12 <= len(view):
        size, name = struct.unpack(">I4s", view[at:at + 8])
        chunk, after = view[at + 8:at + 8 + size], at + 12 + size
        if (name not in allowed and at != 8) or after > len(view) or (idat and name == b"IDAT" and idat[-1][1] != at):
            return None
        if ng.crc32(chunk, ng.crc32(name)) != struct.unpack(">I", view[after - 4:after])[0]:
            return None
        if name == b"IDAT":
            idat.append((chunk, after))
        elif name == b"PLTE":
            if palette is not None or idat:
                return None
            palette = bytes(chunk)
        elif name == b"tRNS" and (palette is None or idat):
            return None
        elif name == b"IEND":
            return (idat[0][0] if len(idat) == 1 else b"".join(c for c, _ in idat), palette) if idat else None
        at = after
    return None


def _inflated(idat, height: int, row: int) -> np.ndarray | None:
    """The rows (height × row bytes, each its filter's byte first), inflated a block of rows at a
    time; None as soon as a row's filter is neither None nor Sub (libpng's to undo then), or the
    data do not inflate to exactly the rows."""
    ng = zlib_ng()
    out = np.empty((height, row), np.uint8)
    inflater, done, block = ng.decompressobj(), 0, max(1, 2**16 // row)
    try:
        while done < height:
            part = inflater.decompress(idat, min(block, height - done) * row)
            idat = inflater.unconsumed_tail
            rows = len(part) // row
            if not rows or len(part) % row:
                return None
            out.reshape(-1)[done * row:done * row + len(part)] = np.frombuffer(part, np.uint8)
            if out[done:done + rows, 0].max() > _SUB:
                return None
            done += rows
    except ng.error:
        return None
    return out if inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data else None


def _unfiltered(filters: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """PNG rows (1 byte a pixel or less) filtered by None or Sub, undone: a Sub row is its own
    running sum."""
    if not filters.any():
        return rows.copy()  # writable and C-ordered, as OpenCV's
    if filters.all():  # OpenCV's
        return _running(rows)
    out = rows.copy()
    sub = np.flatnonzero(filters)
    out[sub] = _running(rows[sub])
    return out


INT32_SUMS = 2**31 - 1  # OpenCV's integral image sums in int32


def _running(rows: np.ndarray) -> np.ndarray:
    """Each row's running sums mod 256 (numpy's uint8 cumsum takes twice as long): the rows as
    one line summed by OpenCV's integral, less the sum before each row, in bands whose int32
    sums cannot overflow."""
    height, width = rows.shape
    band = max(1, INT32_SUMS // (255 * width + 1))
    out = np.empty_like(rows)
    for first in range(0, height, band):
        part = np.ascontiguousarray(rows[first:first + band])
        low = cv2.integral(part.reshape(1, -1))[1].astype(np.uint8)  # sums before each value, mod 256
        done = out[first:first + band]
        done[...] = low[1:].reshape(part.shape)
        done -= low[:-1:width].reshape(-1, 1)
    return out


def zlib_ng():
    from zlib_ng import zlib_ng as module  # imported on first use: start-up stays lean

    return module


def png(rows: np.ndarray, width: int, height: int, depth: int = 8, colour: int = 0, chunks=()) -> bytes:
    """A PNG of these rows of bytes (height × bytes a row, uint8), its header saying the size,
    bits a pixel and colour type, and these chunks (name, data) before its image data. Rows
    unfiltered (libpng's filter search, which PIL always does, took four fifths of its time) and
    deflated by zlib-ng at level 1: a third of OpenCV's time at 320 px (35 against 112–128 µs a
    mask; its zlib is most of that), read as fast by augpipe, PIL and OpenCV, about twice as
    large (3 KB). Not the run-length strategy: a fifth smaller, but PIL and OpenCV read its runs
    a byte at a time, two to three times slower."""
    rows = np.asarray(rows, dtype=np.uint8)
    if rows.ndim != 2 or 0 in rows.shape or not (0 < width and 0 < height):
        raise ValueError(f"a PNG needs at least one pixel, not {width}×{height}")
    lines = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    lines[:, 0] = 0  # filter None
    lines[:, 1:] = rows
    ng = zlib_ng()
    deflate = ng.compressobj(1, ng.DEFLATED, 15, 8, ng.Z_DEFAULT_STRATEGY)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    body = ((b"IHDR", header), *chunks, (b"IDAT", deflate.compress(lines) + deflate.flush()), (b"IEND", b""))
    return PNG_SIGNATURE + b"".join(struct.pack(">I", len(data)) + name + data +
                                    struct.pack(">I", zlib.crc32(data, zlib.crc32(name))) for name, data in body)


def grey_png(mask: np.ndarray) -> bytes:
    """Class indices (H × W, or H × W × 1) as a grey PNG (mode L)."""
    mask = class_indices(mask)
    return png(mask, mask.shape[1], mask.shape[0])


def class_indices(mask) -> np.ndarray:
    """A mask as H × W uint8 class indices; ValueError for any other shape, and for values that
    are not whole numbers from 0 to 255 (`checked_indices`)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"a mask is H × W class indices, not an array of shape {mask.shape}")
    return checked_indices(mask)


def checked_indices(values: np.ndarray) -> np.ndarray:
    """Class indices of any shape as uint8; ValueError for values that are not whole numbers from
    0 to 255 (never wrapped or cut to another class)."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind not in "biuf":
        raise ValueError(f"a mask holds class indices, not {values.dtype} values")
    if values.dtype.kind == "f" and not (np.isfinite(values).all() and np.array_equal(values, np.floor(values))):
        raise ValueError("a mask's class indices must be whole numbers from 0 to 255")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"a mask's class indices must be 0 to 255, not {values.min():g} to {values.max():g}")
    return values.astype(np.uint8)


def write_mask(mask: np.ndarray, palette: bytes | None) -> bytes:
    mask = class_indices(mask)
    height, width = mask.shape
    if not palette:
        return png(mask, width, height)
    if 3 <= len(palette) <= 768 and len(palette) % 3 == 0:
        return _palette_png(mask, palette)
    from PIL import Image

    im = Image.frombytes("P", (width, height), mask.tobytes())
    im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)  # a third of level 6's time; masks are small either way
    return buf.getvalue()


def _palette_png(mask: np.ndarray, palette: bytes) -> bytes:
    """The indices as an 8-bit palette PNG (mode P) with this palette (a PLTE chunk). PIL reads
    the same palette and indices as from its own file (which has 4 bits or fewer a pixel when
    the palette has 16 colours or fewer), written in a fifth of its time."""
    return png(mask, mask.shape[1], mask.shape[0], depth=8, colour=3, chunks=((b"PLTE", palette),))


def read_instance_mask(data: bytes) -> np.ndarray:
    """An instance mask as uint8 0/1 (H, W): any stored value but 0 is inside (0.3 wrote 255)."""
    return cv2.threshold(read_mask(data, "", "an instance mask")[0], 0, 1, cv2.THRESH_BINARY)[1]


def write_instance_mask(mask: np.ndarray) -> bytes:
    """An instance mask (H × W, or H × W × 1; inside where > 0) as a 1-bit grey PNG, white inside
    (viewable as it is; PIL's mode "1").
    The rows packed by numpy, 8 pixels a byte: an eighth of the data to deflate against 8 bits."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"an instance mask is H × W, not an array of shape {mask.shape}")
    if mask.dtype not in (np.uint8, np.bool_):
        mask = mask > 0  # inside, as 0.3 had it: a negative value is not
    height, width = mask.shape
    return png(np.packbits(mask, axis=1), width, height, depth=1)  # packbits: any value but 0 is a 1 bit


PLANE_BITS = 8  # 0/1 masks a uint8 plane


def bit_planes(masks) -> list[np.ndarray] | None:
    """0/1 uint8 masks of one shape as the bits of uint8 planes (mask k is bit k % 8 of plane
    k // 8), None when they are not all such masks or there are fewer than two."""
    if len(masks) < 2 or any(m.dtype != np.uint8 or m.shape != masks[0].shape or m.ndim != 2 for m in masks):
        return None
    if any(m.max(initial=0) > 1 for m in masks):
        return None
    planes = []
    for first in range(0, len(masks), PLANE_BITS):
        plane = np.array(masks[first], dtype=np.uint8, order="C")
        for bit, m in enumerate(masks[first + 1:first + PLANE_BITS], start=1):
            # m × 2^bit added: the bits are apart, so it is their OR (numpy's uint8 left_shift is 6× slower)
            np.add(plane, np.multiply(m, np.uint8(1 << bit)), out=plane)
        planes.append(plane)
    return planes


_BIT_TABLES = [bytes((v >> b) & 1 for v in range(256)) for b in range(PLANE_BITS)]  # a byte's bit b


class PlaneMasks(Sequence):
    """0/1 instance masks held as the bits of `bit_planes`' planes (mask k is bit `bits[k]`: of plane
    bits[k] // 8, bit bits[k] % 8), as albumentations gives them back: a list of masks to whatever
    indexes it (each unpacked once, on first use), and each mask's extent, pixel count and PNG
    worked out from its plane: the extents of a plane's 8 masks from two passes over it, the
    rest inside each mask's extent, not 4 passes over each mask's whole image.
    `select` views some of the masks over the same planes, sharing what was worked out."""

    def __init__(self, planes: list[np.ndarray], bits: Sequence[int], _known: dict | None = None):
        self.planes, self.bits = planes, tuple(bits)
        self._known = {} if _known is None else _known  # by bit: ("mask" | "extent" | "window" | "area" | "png", bit)

    def __len__(self) -> int:
        return len(self.bits)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        bit = self.bits[k]
        mask = self._known.get(("mask", bit))
        if mask is None:
            mask = np.right_shift(self.planes[bit // PLANE_BITS], bit % PLANE_BITS, dtype=np.uint8)
            mask = self._known[("mask", bit)] = np.bitwise_and(mask, 1, out=mask)
            mask.flags.writeable = False  # what is worked out from the planes must stay what it shows
        return mask

    def select(self, picks) -> PlaneMasks:
        return PlaneMasks(self.planes, [self.bits[int(k)] for k in picks], self._known)

    def packed(self) -> list[np.ndarray] | None:
        """The planes, when they hold these masks in order, in as many planes as `bit_planes`
        packs them into (bits past the last mask, of objects dropped since, are never read)."""
        n = len(self.bits)
        return self.planes if n >= 2 and self.bits == tuple(range(n)) and len(self.planes) == -(-n // PLANE_BITS) \
            else None

    def extent(self, k: int) -> tuple[int, int, int, int] | None:
        """Mask k's pixels' extent (x, y, w, h), as cv2.boundingRect gives it; None when it has none."""
        bit = self.bits[k]
        key = ("extent", bit)
        if key not in self._known:
            columns, rows = self._projections(bit // PLANE_BITS)
            picked = _BIT_TABLES[bit % PLANE_BITS]
            columns, rows = columns.translate(picked), rows.translate(picked)  # 1 where the mask is
            x = columns.find(1)
            self._known[key] = None if x < 0 else \
                (x, rows.find(1), columns.rfind(1) - x + 1, rows.rfind(1) - rows.find(1) + 1)
        return self._known[key]

    def _projections(self, p: int) -> tuple[bytes, bytes]:
        """Plane p's columns and rows, each the OR of its values: bit b set where mask b has a pixel."""
        key = ("projections", p)
        got = self._known.get(key)
        if got is None:
            plane = self.planes[p]
            got = self._known[key] = (np.bitwise_or.reduce(plane, axis=0).tobytes(),
                                      np.bitwise_or.reduce(plane, axis=1).tobytes())
        return got

    def _window(self, k: int):
        """Mask k's bit (non-zero where the mask is 1) over its extent's rows, from the byte
        column holding its first pixel to the one holding its last; and where that lies."""
        key = ("window", self.bits[k])
        got = self._known.get(key)
        if got is None:
            got = self._known[key] = self._cut(k)  # the area and the PNG both read it
        return got

    def _cut(self, k: int):
        extent = self.extent(k)
        if extent is None:
            return None, None
        x, y, w, h = extent
        bit = self.bits[k]
        plane = self.planes[bit // PLANE_BITS]
        first, last = x // 8, (x + w + 7) // 8  # byte columns of the packed rows
        part = np.bitwise_and(plane[y:y + h, first * 8:last * 8], np.uint8(1 << bit % PLANE_BITS))
        return part, (y, first)

    def area(self, k: int) -> float:
        """Mask k's pixels, as `pixels_in` counts them."""
        key = ("area", self.bits[k])
        area = self._known.get(key)
        if area is None:
            part, _ = self._window(k)
            area = self._known[key] = 0.0 if part is None else float(cv2.countNonZero(part))
        return area

    def png(self, k: int) -> bytes:
        """Mask k as `write_instance_mask` writes it, to the byte."""
        key = ("png", self.bits[k])
        data = self._known.get(key)
        if data is None:
            height, width = self.planes[0].shape
            rows = np.zeros((height, (width + 7) // 8), np.uint8)
            part, at = self._window(k)
            if part is not None:
                y, first = at
                rows[y:y + part.shape[0], first:first + (part.shape[1] + 7) // 8] = np.packbits(part, axis=1)
            data = self._known[key] = png(rows, width, height, depth=1)
        return data
