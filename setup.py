"""Maps the top-level folders into one import package, ``stigmer``.

The folders tell the architecture (``gen/``, ``backends/``, ``cli/``,
``conformance/``, ``server/``, ``runner/``, ``fullstack/``); on import each is a subpackage:
``stigmer_backend.gen``, ``stigmer_backend.backends``, and so on. pyproject.toml cannot express a
renaming package search, hence this file; everything else lives there.
"""

from setuptools import find_namespace_packages, find_packages, setup

FOLDERS = ("gen", "backends", "cli", "conformance", "server", "runner", "fullstack")

# The contract's .proto files ship as data in ``stigmer_backend.proto`` (folders as
# namespace packages), so generators in any language can use the installed revision.
PROTO = ["stigmer_backend.proto", *(f"stigmer_backend.proto.{sub}" for sub in find_namespace_packages("proto"))]

setup(
    package_dir={f"stigmer_backend.{folder}": folder for folder in FOLDERS} | {"stigmer_backend.proto": "proto"},
    packages=[
        f"stigmer_backend.{folder}{'.' + sub if sub else ''}"
        for folder in FOLDERS
        for sub in ["", *find_packages(folder)]
    ]
    + PROTO,
    # TRACEABILITY.md: the conformance report names the contract sentence each failing test checks.
    package_data={f"stigmer_backend.{folder}": ["py.typed"] for folder in FOLDERS}
    | {"stigmer_backend.conformance": ["py.typed", "TRACEABILITY.md"]}
    | {name: ["*.proto"] for name in PROTO}
    | {"stigmer_backend.proto": ["py.typed", "*.proto"]},
)
