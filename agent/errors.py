"""The agent's one error type: a refused or failed operation, reported to the server with a code."""


class OperationError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
