"""The ``vecclf`` command. Results go to stdout (``--json``: one JSON document); progress, warnings and
per-input failures to stderr. ``parser`` reads the arguments, ``commands`` does the work, ``output`` shows it."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

from ..errors import InvalidInputError, VecclfError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 1 the store or model failed, 2 bad usage or input,
    3 ``verify``: not verified, 130 interrupted)."""
    from .commands import COMMANDS
    from .parser import parse

    for stream in (sys.stdout, sys.stderr):  # names from argv or disk that are not UTF-8 print as escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = sys.argv[1:] if argv is None else list(argv)
    name, options = parse(args)
    if not os.environ.get("VECCLF_DEBUG"):
        # Libraries (open_clip, transformers) log through the root logger; the command reports errors itself.
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        return int(COMMANDS[name](options))
    except VecclfError as exc:
        print(f"vecclf: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInputError) else 1
    except BrokenPipeError:  # output piped into e.g. `head`: not an error worth a message
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("vecclf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so briefly; VECCLF_DEBUG=1 shows the traceback
        if os.environ.get("VECCLF_DEBUG"):
            traceback.print_exc()
        print(f"vecclf: internal error: {type(exc).__name__}: {exc} (set VECCLF_DEBUG=1 for details)", file=sys.stderr)
        return 1


__all__ = ["main"]
