"""One exception type for user-facing input problems: the message is a single line naming the file or key."""


class InputError(ValueError):
    """Bad user input (config, dataset file, model id). Its message is meant to be shown as is."""
