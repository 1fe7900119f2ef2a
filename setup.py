"""The C part of Schoolgate; everything else is in pyproject.toml.

The content scan's piece memory (proxy_addons/core/content/piece_memo.py) is C.
It is optional: without a C compiler and Python's headers the install goes on and the same
memory runs in Python, slower (`schoolgate doctor` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "proxy_addons.core.content._piece_memo",
            sources=["proxy_addons/core/content/_piece_memo.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
