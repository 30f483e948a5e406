"""The benchmark's images, found at run time in installed packages.

No image is committed to the repository: each one is read from a PyPI or Debian
package that ships it, and one that is not installed is skipped with a printed
reason. Everything is there after

    python3 -m pip install ".[bench]"      # scikit-image, scikit-learn, matplotlib, mahotas
    sudo apt-get install --no-install-recommends \\
        plasma-workspace-wallpapers mate-backgrounds opencv-doc adwaita-icon-theme

Photographs larger than ``MAX_SIDE`` on a side are resized (Lanczos) to fit in
``MAX_SIDE`` x ``MAX_SIDE``, so every photograph is 0.1-0.6 MP; the 9.4 MP case
is a 3072 x 3072 Lanczos resample of the astronaut. Everything is deterministic:
the same packages give the same pixels.

    python3 bench/corpus.py      # list every image, its source, size and whether it is here
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# Wallpapers are 2560 x 1600 and larger; fitting them in this box keeps each
# photograph near the 512 x 512 scale of the speed targets.
MAX_SIDE = 768
BIG_SIDE = 3072
BIG_NAME = f"astronaut-{BIG_SIDE} (9.4 MP)"

_PLASMA = "/usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
_MATE = "/usr/share/backgrounds/mate/nature/{}.jpg"
_OPENCV = "/usr/share/doc/opencv-doc/examples/data/{}"


@dataclass(frozen=True)
class Entry:
    """One image: where it lives and what it shows."""

    name: str
    kind: str  # "photo", "gray" (a photograph in L mode) or "graphic"
    subject: str
    module: str | None  # Python package holding the file, or None for an absolute path
    path: str  # inside the package, or absolute
    install: str  # what provides it
    mode: str = "RGB"  # the mode the bench uses
    fit: bool = True  # resized to fit MAX_SIDE (not screenshots: resampled text is not text)

    def locate(self) -> Path | None:
        if self.module is None:
            p = Path(self.path)
            return p if p.is_file() else None
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for base in spec.submodule_search_locations:
            p = Path(base) / self.path
            if p.is_file():
                return p
        return None

    def load(self) -> Image.Image:
        """The image, in ``self.mode``, fitted in ``MAX_SIDE`` x ``MAX_SIDE``."""
        path = self.locate()
        if path is None:
            raise FileNotFoundError(f"not installed ({self.install})")
        with Image.open(path) as im:
            im = im.convert(self.mode)
        if self.fit and max(im.size) > MAX_SIDE:
            scale = MAX_SIDE / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            im = im.resize(size, Image.LANCZOS)
        return im


def _sk(name, kind, subject, file, mode="RGB"):
    return Entry(name, kind, subject, "skimage.data", file, "pip: scikit-image", mode)


def _deb(name, subject, path, package, kind="photo", mode="RGB", fit=True):
    return Entry(name, kind, subject, None, path, f"apt: {package}", mode, fit)


CATALOGUE: list[Entry] = [
    # People and skin
    _sk("astronaut", "photo", "portrait, skin, flag", "astronaut.png"),
    Entry(
        "grace_hopper",
        "photo",
        "portrait, skin, uniform",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "pip: matplotlib",
    ),
    Entry(
        "luispedro",
        "photo",
        "portrait, skin, indoor",
        "mahotas",
        "demos/data/luispedro.jpg",
        "pip: mahotas",
    ),
    _deb("messi5", "people, skin, grass, crowd", _OPENCV.format("messi5.jpg"), "opencv-doc"),
    # Sky
    _deb(
        "evening_glow",
        "sunset sky over water",
        _PLASMA.format("EveningGlow"),
        "plasma-workspace-wallpapers",
    ),
    _deb("kite", "blue sky, clouds", _PLASMA.format("Kite"), "plasma-workspace-wallpapers"),
    _deb("storm", "storm clouds over a field", _MATE.format("Storm"), "mate-backgrounds"),
    _deb(
        "by_the_water",
        "sunset sky, boats, lake",
        _PLASMA.format("BytheWater"),
        "plasma-workspace-wallpapers",
    ),
    _sk("rocket", "photo", "launch pad, sky", "rocket.jpg"),
    _deb(
        "summer_night",
        "dusk sky over a lake",
        "/usr/share/wallpapers/summer_1am/contents/images/1920x1080.jpg",
        "plasma-workspace-wallpapers",
    ),
    _deb("home", "blue sky, tower, birds", _OPENCV.format("home.jpg"), "opencv-doc"),
    _deb("building", "building, sky, trees", _OPENCV.format("building.jpg"), "opencv-doc"),
    # Landscapes and places
    Entry(
        "china",
        "photo",
        "temple, trees, sky",
        "sklearn.datasets",
        "images/china.jpg",
        "pip: scikit-learn",
    ),
    _deb("path", "forest path", _PLASMA.format("Path"), "plasma-workspace-wallpapers"),
    _deb("dune", "beach grass, sea, sky", _MATE.format("Dune"), "mate-backgrounds"),
    _deb("leuven", "street, brick houses", _OPENCV.format("leuvenA.jpg"), "opencv-doc"),
    # Food and objects
    _sk("coffee", "photo", "coffee cup, saucer", "coffee.png"),
    _deb("fruits", "cut fruit", _OPENCV.format("fruits.jpg"), "opencv-doc"),
    _deb(
        "colorful_cups",
        "stacked plastic cups",
        _PLASMA.format("ColorfulCups"),
        "plasma-workspace-wallpapers",
    ),
    # Nature close-ups and texture
    Entry(
        "flower",
        "photo",
        "flower, foliage",
        "sklearn.datasets",
        "images/flower.jpg",
        "pip: scikit-learn",
    ),
    _deb("baboon", "fur, saturated face", _OPENCV.format("baboon.jpg"), "opencv-doc"),
    _deb("aerial", "city from the air", _OPENCV.format("aero1.jpg"), "opencv-doc"),
    _deb("squirrel", "squirrel, green bokeh", _OPENCV.format("squirrel_cls.jpg"), "opencv-doc"),
    _deb("dog", "dog, fur, tongue", _OPENCV.format("chicky_512.png"), "opencv-doc"),
    _deb("butterfly", "butterfly on a leaf", _OPENCV.format("butterfly.jpg"), "opencv-doc"),
    _deb("water_drop", "water drop, splash", _MATE.format("Aqua"), "mate-backgrounds"),
    _deb("marigold", "flower, bokeh", _MATE.format("Garden"), "mate-backgrounds"),
    _deb("dandelion", "seeds, orange bokeh", _MATE.format("TwoWings"), "mate-backgrounds"),
    _deb(
        "fallen_leaf",
        "autumn leaves, bokeh",
        _PLASMA.format("FallenLeaf"),
        "plasma-workspace-wallpapers",
    ),
    _deb("ladybird", "ladybird, flowers, green", _MATE.format("LadyBird"), "mate-backgrounds"),
    _deb("moss", "moss texture", _PLASMA.format("OneStandsOut"), "plasma-workspace-wallpapers"),
    _sk("chelsea", "photo", "cat, fur", "chelsea.png"),
    _sk("immunohistochemistry", "photo", "microscopy stain", "ihc.png"),
    # Night and dark
    _deb(
        "darkest_hour",
        "dusk, dark blue water",
        _PLASMA.format("DarkestHour"),
        "plasma-workspace-wallpapers",
    ),
    _sk("hubble_deep_field", "photo", "night sky, galaxies", "hubble_deep_field.jpg"),
    # Gray photographs
    _sk("camera", "gray", "cameraman (gray)", "camera.png", mode="L"),
    _sk("moon", "gray", "moon surface (gray)", "moon.png", mode="L"),
    _deb(
        "grey_pier",
        "pier in fog (gray)",
        _PLASMA.format("Grey"),
        "plasma-workspace-wallpapers",
        kind="gray",
        mode="L",
    ),
    # Graphics
    _sk("logo", "graphic", "scikit-image logo (RGBA)", "logo.png", mode="RGBA"),
    Entry(
        "matplotlib_logo",
        "graphic",
        "logo with text (RGBA)",
        "matplotlib",
        "mpl-data/sample_data/logo2.png",
        "pip: matplotlib",
        "RGBA",
    ),
    Entry(
        "minduka",
        "graphic",
        "icon (RGBA)",
        "matplotlib",
        "mpl-data/sample_data/Minduka_Present_Blue_Pack.png",
        "pip: matplotlib",
        "RGBA",
    ),  # Alpha that is neither 0 nor 255 over much of the image: soft edges,
    # shadows and translucent fills, where the error seen depends on alpha.
    _deb(
        "opencv_logo",
        "logo, anti-aliased edges (RGBA)",
        _OPENCV.format("opencv-logo.png"),
        "opencv-doc",
        kind="graphic",
        mode="RGBA",
    ),
    _deb(
        "headphones",
        "icon with soft shadow (RGBA)",
        "/usr/share/icons/Adwaita/512x512/devices/audio-headphones.png",
        "adwaita-icon-theme",
        kind="graphic",
        mode="RGBA",
    ),
    _deb(
        "avatar",
        "icon, flat shapes (RGBA)",
        "/usr/share/icons/Adwaita/512x512/status/avatar-default.png",
        "adwaita-icon-theme",
        kind="graphic",
        mode="RGBA",
    ),
    _deb(
        "gulp",
        "translucent gradients (RGBA)",
        "/usr/share/backgrounds/mate/abstract/Gulp.png",
        "mate-backgrounds",
        kind="graphic",
        mode="RGBA",
    ),
    # Screenshots: text and flat areas that repeat, as they are (not resized).
    _deb(
        "qt_gui",
        "screenshot: windows, labels, a photograph",
        "/usr/share/doc/opencv-doc/opencv4/html/qtgui.png",
        "opencv-doc",
        kind="graphic",
        fit=False,
    ),
    _deb(
        "terminal",
        "screenshot: terminal text",
        "/usr/share/doc/opencv-doc/opencv4/html/sbt_eclipse.png",
        "opencv-doc",
        kind="graphic",
        fit=False,
    ),
    _deb(
        "spring",
        "translucent shapes over clear (RGBA)",
        "/usr/share/backgrounds/mate/abstract/Spring.png",
        "mate-backgrounds",
        kind="graphic",
        mode="RGBA",
    ),
]

QUICK = ("astronaut", "coffee")


def _load(entries: list[Entry], quiet: bool) -> list[tuple[str, Image.Image]]:
    out = []
    for e in entries:
        try:
            out.append((e.name, e.load()))
        except (OSError, FileNotFoundError) as exc:
            if not quiet:
                print(f"corpus: skipping {e.name}: {exc}", file=sys.stderr)
    return out


def select(
    names: list[str] | None = None,
    kinds: tuple[str, ...] = ("photo", "gray", "graphic"),
    quiet: bool = False,
) -> list[tuple[str, Image.Image]]:
    """(name, image) for the catalogue entries of these kinds (or exactly these names)."""
    if names is not None:
        known = {e.name: e for e in CATALOGUE}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown images: {', '.join(unknown)}")
        entries = [known[n] for n in names if n in known]
    else:
        entries = [e for e in CATALOGUE if e.kind in kinds]
    return _load(entries, quiet)


def photographs() -> list[tuple[str, Image.Image]]:
    """The colour photographs (RGB), in catalogue order; missing ones are skipped."""
    return select(kinds=("photo",))


def others() -> list[tuple[str, Image.Image]]:
    """The gray photographs (L) and graphics (RGBA)."""
    return select(kinds=("gray", "graphic"))


def quick() -> list[tuple[str, Image.Image]]:
    """Two small photographs for a fast run."""
    return select(list(QUICK))


def big() -> tuple[str, Image.Image] | None:
    """The 9.4 MP case: the astronaut resampled (Lanczos) to 3072 x 3072."""
    found = select(["astronaut"], quiet=True)
    if not found:
        print("corpus: skipping the 9.4 MP case: astronaut not installed", file=sys.stderr)
        return None
    return BIG_NAME, found[0][1].resize((BIG_SIDE, BIG_SIDE), Image.LANCZOS)


def kind_of(name: str) -> str:
    """The kind of a corpus image: photo, gray or graphic (the 9.4 MP case is a photo)."""
    for e in CATALOGUE:
        if e.name == name:
            return e.kind
    return "photo"


def main() -> None:
    print("| name | kind | subject | source | size | mode |")
    print("|---|---|---|---|---|---|")
    for e in CATALOGUE:
        path = e.locate()
        if path is None:
            size, where = "missing", e.install
        else:
            im = e.load()
            size, where = f"{im.width} x {im.height}", f"{e.install} ({path})"
        print(f"| {e.name} | {e.kind} | {e.subject} | {where} | {size} | {e.mode} |")


if __name__ == "__main__":
    main()
