"""Build configuration for the one compiled piece, chainrule._kernels (everything else is in pyproject.toml).

The extension is optional: where no C compiler is available the build goes on without it and chainrule
uses the same updates written in NumPy.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "chainrule._kernels",
            ["src/chainrule/_kernels.c"],
            optional=True,
            extra_compile_args=["-O3", "-fno-math-errno", "-ffp-contract=off"],
        )
    ]
)
