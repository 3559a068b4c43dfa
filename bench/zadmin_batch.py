"""Run many ``zpop`` CLI commands in one process (``zpop.admin.main``).

Input (a JSON file named by argv[1]): a list of {"argv": [...], "stdin": str}.
Output on stdout: a JSON list with each command's stdout. Any failure exits 1
with the command and its error. Starting Python once instead of thousands of
times keeps the benchmark set-up short; the commands are the real CLI's.
"""

from __future__ import annotations

import io
import json
import sys

from zpop.admin import main


def run(commands: list[dict[str, object]]) -> list[str]:
    """Run each command; return their stdout texts."""
    outputs = []
    for command in commands:
        argv = [str(a) for a in command["argv"]]  # type: ignore[attr-defined]
        stdin = io.BytesIO(str(command.get("stdin", "")).encode())
        out, err = io.StringIO(), io.StringIO()
        status = main(argv, stdin=stdin, stdout=out, stderr=err)
        if status != 0 and not command.get("may_fail"):
            sys.stderr.write(f"zpop {' '.join(argv)}: {err.getvalue()}")
            sys.exit(1)
        outputs.append(out.getvalue())
    return outputs


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        json.dump(run(json.load(f)), sys.stdout)
