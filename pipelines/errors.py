"""The one exception type for mistakes a user can fix (bad path, bad option, bad file).

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug (exit 1).
"""


class UserError(Exception):
    """A problem with the user's input: its message names the file, line or option at fault."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training, after the run was marked "interrupted": says how to go on."""

    def __init__(self, resume):
        super().__init__(resume)
        self.resume = resume  # the command that continues the run


def require(condition, message):
    """Raise UserError(message) unless condition holds; keeps validation one line long."""
    if not condition:
        raise UserError(message)
