"""``python -m stigmer_backend.cli``: this project's ``stigmer``, whatever else is first on PATH."""

from .main import main

if __name__ == "__main__":
    main()
