"""The one exception type that reaches users: a clear, one-line reason."""


class ChromosortError(ValueError):
    """Bad input or state that the user can fix (message names the problem and the fix)."""
