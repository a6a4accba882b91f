"""Errors raised by services. Each carries a message fit to show a user."""
from __future__ import annotations


class ServiceError(Exception):
    """Base class: the action was refused; `str(exc)` says why, in words for the user."""

    http_status = 400


class ValidationError(ServiceError):
    http_status = 400


class NotFound(ServiceError):
    http_status = 404


class PermissionDenied(ServiceError):
    http_status = 403


class Conflict(ServiceError):
    http_status = 409


class RateLimited(ServiceError):
    http_status = 429


class ConfigurationError(ServiceError):
    """The deployment's configuration does not allow this."""
