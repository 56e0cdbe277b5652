"""Regenerate the Open Inference Protocol's Python modules from ``grpc_predict_v2.proto``.

Why a module: the generated ``*_pb2.py`` / ``*_pb2_grpc.py`` are committed (the project venv
has no ``grpcio-tools``; the third-party clients' venv has), and a test regenerates them into
a temporary folder and compares, so the committed code cannot drift from the ``.proto``.

    python -m soilcast.serving.oip.protos --python .venv-clients/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]  # .../src: the import root, so the stubs import each other as soilcast.serving.oip.*
PROTO = HERE / "grpc_predict_v2.proto"
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py")
HEADER = ("# Generated from grpc_predict_v2.proto by grpc_tools.protoc; do not edit. Regenerate with:\n"
          "#   python -m soilcast.serving.oip.protos --python .venv-clients/bin/python\n"
          "# ruff: noqa\n")


def generate(python: str | Path) -> dict[str, str]:
    """{file name: text} of the modules ``python``'s ``grpc_tools.protoc`` makes of :data:`PROTO`."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(Path(python).absolute()), "-m", "grpc_tools.protoc", f"-I{SRC}", f"--python_out={out}",
               f"--grpc_python_out={out}", str(PROTO.relative_to(SRC))]
        done = subprocess.run(cmd, cwd=SRC, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
        folder = Path(out, *HERE.relative_to(SRC).parts)
        return {name: HEADER + (folder / name).read_text() for name in GENERATED}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="a Python with grpcio-tools (.venv-clients/bin/python)")
    args = parser.parse_args(argv)
    for name, text in generate(args.python).items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
