"""The project's error type for bad input, as opposed to bugs."""


class RetrofitError(Exception):
    """Bad input the user can fix: params, files, rows, missing assets, unreachable endpoints.

    ``retrofit.cli.run`` prints it as one line and exits 2; any other exception keeps its traceback.
    """


class InputError(RetrofitError):
    """A stage's input file is missing, unreadable or breaks its schema; the message names the file, line and field."""


class AssetError(RetrofitError):
    """A model directory or other asset is missing or incomplete; the message names it and the stage that makes it."""
