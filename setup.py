"""Build the compiled index codec, pil_kmc._kmc; everything else is in pyproject.toml."""

import sys

from setuptools import Extension, setup

# MSVC optimises with /O2 by default in release builds; gcc and clang need -O3.
flags = [] if sys.platform == "win32" else ["-O3", "-std=c99"]

setup(
    ext_modules=[
        Extension(
            "pil_kmc._kmc",
            sources=[
                "csrc/kmcmodule.c",
                "csrc/context4.c",
                "csrc/strips5.c",
                "csrc/tables6.c",
                "csrc/packing.c",
                "csrc/dither.c",
            ],
            depends=["csrc/kmc_codec.h", "csrc/rans.h"],
            include_dirs=["csrc"],
            extra_compile_args=flags,
        )
    ]
)
