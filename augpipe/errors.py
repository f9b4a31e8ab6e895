"""The errors a user can cause. The CLI turns each into one line and an exit code."""


def one_of(choices) -> str:
    """`a`, `a or b`, `a, b or c`: a choice as the errors and the help name it."""
    choices = list(choices)
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


class ExpandWarning(UserWarning):
    """What an expand warns of (a class validation holds none of, most inputs skipped, ...): in its
    manifest's `warnings`, in the command's summary, and from the library as a Python warning (a
    new user's script saw none of them)."""


class AugpipeError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""

    exit_code = 2


class UsageError(AugpipeError):
    """Options that do not go together."""


class RecipeError(AugpipeError):
    """A recipe that cannot be loaded: names the file, the transform and the field."""


class SourceError(AugpipeError):
    """A source folder that cannot be used (missing, empty, unreadable)."""


class DamagedRow(SourceError, ValueError):
    """A shard's row whose image or target cannot be read, named by its shard and its row there
    (a ValueError too, as the decoder's own error was, for code that caught that)."""


class BadRow(ValueError):
    """A row of a table a kind reads whole whose fields do not hold together (more categories than
    boxes): `row`, its index in that table, for the reader to name it (`DamagedRow`)."""

    row = 0


def bad_row(row: int, reason: str) -> BadRow:
    exc = BadRow(reason)
    exc.row = row
    return exc


class OutputError(AugpipeError):
    """An output folder that cannot be written, or holds another run's output."""


class StoreError(AugpipeError):
    """A location that cannot be used: bad URI, missing bucket, no credentials, access denied."""


class RunLockedError(OutputError):
    """Another run owns the output folder."""


class EngineError(AugpipeError):
    """The engine itself failed to start (Ray's own start-up): not the user's input."""

    exit_code = 3


class StrictSkipError(AugpipeError):
    """With --strict, the first input that would be skipped stops the run."""


class SkipInput(Exception):
    """One input cannot be used; the run records the reason and goes on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
