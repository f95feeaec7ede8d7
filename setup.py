"""Build the optional native core (racecheck/engine/_native.c).

``optional=True``: on a machine without a C compiler (or on an unsupported Python) the
extension is skipped and racecheck runs on its pure-Python engine; everything else about
the project lives in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "racecheck.engine._native",
            sources=["racecheck/engine/_native.c"],
            depends=[
                "racecheck/engine/_native_hooks.c",
                "racecheck/engine/_native_shadowmap.c",
                "racecheck/engine/_native_stacks.c",
            ],
            optional=True,
            extra_compile_args=["-O2", "-std=gnu11"],
        )
    ]
)
