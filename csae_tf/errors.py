"""The project's errors and the one place that turns them into what a command prints.

Every command's `main(argv)` is wrapped by `command(...)`: an error the user can fix (a `CsaeError`,
or one of the older error classes in `USER_ERRORS`) ends as one line ``error: <message>`` on stderr
and exit status 2; Ctrl-C ends as one line and status 130; anything else is a bug and keeps its
traceback. This module imports neither TensorFlow nor numpy: `csae --help` stays fast.

    @command(interrupted="interrupted: rerun the same command to resume")
    def main(argv: list[str] | None = None) -> int:
        ...
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

USAGE = 2
INTERRUPTED = 130


class CsaeError(RuntimeError):
    """An error the user can fix; its message is shown as is, after ``error:``."""


# Error classes defined before CsaeError existed, as "module:Class". They count only once their module
# is imported (an error of a module that was never imported cannot have been raised), so checking them
# imports nothing.
USER_ERRORS = (
    "csae_tf.config:ConfigError",
    "csae_tf.data:DataError",
    "csae_tf.trainer:RunError",
    "csae_tf.ood:OodError",
    "tuning.space:SearchError",
)


def user_error_types() -> tuple[type[BaseException], ...]:
    """CsaeError and every class of `USER_ERRORS` whose module is loaded."""
    types: list[type[BaseException]] = [CsaeError]
    for name in USER_ERRORS:
        module, _, cls = name.partition(":")
        found = getattr(sys.modules.get(module), cls, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            types.append(found)
    return tuple(types)


def message(err: BaseException) -> str:
    """The one-line text of an error (an OSError names its file)."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def run_main(fn: Callable[[], int | None], *, interrupted: str = "interrupted",
             also: tuple[type[BaseException], ...] = ()) -> int:
    """Call `fn` and return its exit status; user errors (and `also`, and OSError) become ``error:`` and 2."""
    try:
        status = fn()
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return INTERRUPTED
    except Exception as err:
        if not isinstance(err, (*user_error_types(), *also, OSError)):
            raise
        print(f"error: {message(err)}", file=sys.stderr)
        return USAGE
    return 0 if status is None else int(status)


def command(*, interrupted: str = "interrupted", also: tuple[type[BaseException], ...] = ()):
    """Decorate a `main(argv)` so that it reports errors through `run_main`."""
    def decorate(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(argv: list[str] | None = None) -> int:
            return run_main(lambda: main(argv), interrupted=interrupted, also=also)
        return wrapped
    return decorate


# --- path arguments: the wrong kind of thing is a CsaeError that names the flag and the path ---

def existing_dir(path: str | Path, flag: str) -> Path:
    """`path` as a Path if it is a folder; otherwise a CsaeError that says what it is instead."""
    path = Path(path)
    if path.is_file():
        raise CsaeError(f"{flag} {path} is a file, not a folder")
    if not path.is_dir():
        raise CsaeError(f"{flag} {path} does not exist")
    return path


def output_dir(path: str | Path, flag: str) -> Path:
    """Create the output folder `path` (and its parents) and check that it can be written."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = " is a file" if blocker == path else f": {blocker} is a file"
        raise CsaeError(f"{flag} {path}{where}, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CsaeError(f"{flag} {path}: cannot create the folder ({err.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CsaeError(f"{flag} {path}: the folder is not writable")
    return path


def output_file(path: str | Path, flag: str) -> Path:
    """Check that the file `path` can be written (creating its folder); a folder in its place is an error."""
    path = Path(path)
    if path.is_dir():
        raise CsaeError(f"{flag} {path} is a folder; name a file")
    output_dir(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise CsaeError(f"{flag} {path}: the file is not writable")
    return path
