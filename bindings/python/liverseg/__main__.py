"""`python -m liverseg` and the `liverseg` console script: run the bundled `liverseg`
program (the same command `make cli` builds), so both behave exactly as the CLI does."""
import os
import sys
from pathlib import Path


def program() -> str:
    """The `liverseg` program: $LIVERSEG_CLI, else the one installed in this package."""
    path = os.environ.get("LIVERSEG_CLI") or str(Path(__file__).resolve().parent / "bin" / "liverseg")
    if not os.access(path, os.X_OK):
        sys.exit(f"liverseg: the liverseg program is not at {path}: install the package (pip install .) "
                 "or set LIVERSEG_CLI to a built liverseg-cli")
    return path


def main() -> None:
    path = program()
    # The program finds its default model from its own path (argv[0]).
    os.execv(path, [path, *sys.argv[1:]])


if __name__ == "__main__":
    main()
