"""Errors raised by the engine, one place, so callers can tell bad input from a broken system."""

from __future__ import annotations


class TradeflowError(Exception):
    """Base class: a failure the engine detected and can explain."""


class SourceDataError(TradeflowError):
    """Market data that cannot be read as bars (names the file, the row and what was wrong)."""


class VendorError(TradeflowError):
    """A market data vendor failed (after its client's retries) or answered with an error."""


class ConfigurationError(TradeflowError):
    """A setting is missing or out of range."""


class QualityGateError(TradeflowError):
    """The latest bars failed the quality gate, so research on them is refused."""


class InsufficientDataError(TradeflowError):
    """A stage has too little data to produce a meaningful result."""


class AllocationError(TradeflowError):
    """An allocation cannot be produced or does not satisfy its constraints."""


class IllegalTransitionError(TradeflowError):
    """An allocation or order state change that the state machine forbids."""


class NotFoundError(TradeflowError):
    """A referenced record does not exist."""


class ExecutionRefusedError(TradeflowError):
    """Execution was refused before any order was sent (fail closed)."""


class VenueBusyError(ExecutionRefusedError):
    """Another execution held the venue's lock past the wait."""


class ReconciliationError(ExecutionRefusedError):
    """The broker's book and ours disagree: nothing is sent until a person looks."""
