"""Databricks API errors: one small class per error_code, rendered by one handler as
`{"error_code": ..., "message": ...}` with the status Databricks uses for it."""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    error_code = "INVALID_PARAMETER_VALUE"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


class InvalidParameterValue(ApiError):
    pass


class MalformedRequest(ApiError):
    error_code = "MALFORMED_REQUEST"


class RequestTooLarge(InvalidParameterValue):
    # 413 so a proxy-aware client knows resending won't help; the error_code is one every SDK maps to
    # a bad-request error, never to a retryable one.
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request is larger than the {limit // (1024 * 1024)} MB the API accepts.")


class InvalidState(ApiError):
    error_code = "INVALID_STATE"


class NotSupportedLocally(InvalidParameterValue):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not supported by the local workspace (aml-databricks).")


class RunNotFound(InvalidParameterValue):
    # Databricks answers 400, not 404, for a missing run; the SDK maps the message to ResourceDoesNotExist.
    def __init__(self, run_id: object) -> None:
        super().__init__(f"Run {run_id} does not exist.")


class JobNotFound(InvalidParameterValue):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"Job {job_id} does not exist.")


class ResourceDoesNotExist(ApiError):
    status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class PathNotFound(ResourceDoesNotExist):
    def __init__(self, path: str) -> None:
        super().__init__(f"Path ({path}) doesn't exist.")


class ResourceAlreadyExists(ApiError):
    error_code = "RESOURCE_ALREADY_EXISTS"


class DirectoryNotEmpty(ApiError):
    error_code = "DIRECTORY_NOT_EMPTY"


class NotFound(ApiError):
    """The Files API's newer code for a missing file or folder (the older APIs say RESOURCE_DOES_NOT_EXIST)."""

    status = 404
    error_code = "NOT_FOUND"


class AlreadyExists(ApiError):
    """The Files API's newer code for an existing file or folder."""

    status = 409
    error_code = "ALREADY_EXISTS"


class Unauthenticated(ApiError):
    status = 401
    error_code = "UNAUTHENTICATED"


class PermissionDenied(ApiError):
    status = 403
    error_code = "PERMISSION_DENIED"


class EndpointNotFound(ApiError):
    status = 404
    error_code = "ENDPOINT_NOT_FOUND"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"No API found for '{method} {path}'")


class RequestLimitExceeded(ApiError):
    status = 429
    error_code = "REQUEST_LIMIT_EXCEEDED"


class TemporarilyUnavailable(ApiError):
    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class InternalError(ApiError):
    status = 500
    error_code = "INTERNAL_ERROR"


class SourceNotFound(Exception):
    """A task's notebook or python file is not there when its run starts: the task run ends
    INTERNAL_ERROR with RESOURCE_NOT_FOUND (not an API error: the request was accepted earlier)."""
