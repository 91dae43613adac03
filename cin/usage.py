"""The `cin` command's exit statuses, and the error for a command line it cannot run."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # a bad command line or config
EXIT_RESUMABLE = 75  # EX_TEMPFAIL: interrupted; the same command again carries on


class UsageError(Exception):
    """A command line that cannot be carried out, told in one line."""
