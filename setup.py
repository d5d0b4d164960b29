"""Maps the top-level folders into one import package, ``stigmer``.

The folders tell the architecture (``gen/``, ``backends/``, ``cli/``,
``conformance/``, ``server/``, ``runner/``); on import each is a subpackage:
``stigmer.gen``, ``stigmer.backends``, and so on. pyproject.toml cannot express a
renaming package search, hence this file; everything else lives there.
"""

from setuptools import find_packages, setup

FOLDERS = ("gen", "backends", "cli", "conformance", "server", "runner")

setup(
    package_dir={f"stigmer.{folder}": folder for folder in FOLDERS},
    packages=[
        f"stigmer.{folder}{'.' + sub if sub else ''}" for folder in FOLDERS for sub in ["", *find_packages(folder)]
    ],
    package_data={"stigmer.gen": ["py.typed"]},
)
