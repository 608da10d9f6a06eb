"""OpenTelemetry spans of goalrt: off, and nothing imported, unless tracing is configured.

Tracing is on when one of these holds (checked in this order):

- a tracer provider was given to goalrt (``use_tracer_provider``: tests, an
  application that keeps its own provider apart);
- ``OTEL_TRACES_EXPORTER`` names exporters (not ``none``) and
  ``OTEL_SDK_DISABLED`` is not ``true``: goalrt sets up the SDK once, as the
  standard variables say (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_*``), with a
  batch processor per exporter named, found as the SDK finds them (the
  ``opentelemetry_traces_exporter`` entry points): ``otlp`` needs
  ``opentelemetry-exporter-otlp`` installed, and without it goalrt says so once
  and prints the spans (``console``). The provider becomes the global one
  unless the application set its own;
- the application set up OpenTelemetry itself (a global SDK provider): the
  spans go there.

Otherwise each ``span`` is a shared no-op context manager: no OpenTelemetry
import, no allocation, one check of two module globals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

log = logging.getLogger("goalrt.tracing")

# The instrumentation scope of goalrt's spans.
SCOPE = "goalrt"

_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()
# Given by use_tracer_provider (wins over everything else).
_given: Any = None
# The tracer of the provider set up from the OTEL_* variables (None: they ask for none), once checked.
_from_env: Any = None
_env_checked = False


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Send goalrt's spans to ``provider`` (None: back to the OTEL_* variables and the global provider)."""
    global _given
    _given = None if provider is None else provider.get_tracer(SCOPE)


def _env_tracer() -> Tracer | None:
    global _from_env, _env_checked
    if not _env_checked:
        _env_checked = True
        names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
        disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        if names and names != ["none"] and not disabled:
            _from_env = _set_up([n for n in names if n != "none"])
    tracer: Tracer | None = _from_env
    return tracer


def _set_up(names: list[str]) -> Tracer:
    """Make the SDK's provider with the exporters ``names``; make it the global one unless one is set."""
    from importlib.metadata import entry_points

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):  # the application set up its own: use it
        return current.get_tracer(SCOPE)
    provider = TracerProvider()  # resource, sampler and limits from the OTEL_* variables
    found = {e.name: e for e in entry_points(group="opentelemetry_traces_exporter")}
    for name in names:
        entry = found.get(name)
        if entry is None:
            log.warning("OTEL_TRACES_EXPORTER=%s: no such exporter installed; printing spans instead", name)
            exporter: Any = ConsoleSpanExporter()
        else:
            exporter = entry.load()()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.get_tracer(SCOPE)


def tracer() -> Tracer | None:
    """Return the tracer goalrt's spans go to, or None when tracing is off."""
    if _given is not None:
        given: Tracer = _given
        return given
    found = _env_tracer()
    if found is not None:
        return found
    if "opentelemetry.trace" in sys.modules:  # imported by the application: did it set a provider?
        from opentelemetry import trace

        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return current.get_tracer(SCOPE)
    return None


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent: Context | None = None,
    start_time: int | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """Return a context manager running a span (the current one inside), or a no-op yielding None when off.

    ``kind`` is an OpenTelemetry ``SpanKind`` name in lower case;
    ``parent`` a context to start from instead of the current one
    (``root()`` for a trace of its own); ``start_time`` in ns since the epoch.
    """
    if _given is None and (_env_checked and _from_env is None) and "opentelemetry.trace" not in sys.modules:
        return _OFF
    found = tracer()
    if found is None:
        return _OFF
    return _current(found, name, attributes, kind, parent, start_time)


@contextlib.contextmanager
def _current(
    found: Tracer,
    name: str,
    attributes: Mapping[str, Any] | None,
    kind: str,
    parent: Context | None,
    start_time: int | None,
) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind

    with found.start_as_current_span(
        name, context=parent, kind=SpanKind[kind.upper()], attributes=attributes, start_time=start_time
    ) as current:
        yield current


def record(name: str, start_time: int, end_time: int, attributes: Mapping[str, Any] | None = None) -> None:
    """Record a span that already happened (times in ns since the epoch), as a child of the current span."""
    found = tracer()
    if found is not None:
        found.start_span(name, attributes=attributes, start_time=start_time).end(end_time=end_time)


def root(traceparent: str | None = None) -> Context | None:
    """Return the context a goal's spans start from: the caller's ``traceparent`` (W3C), or a new trace.

    None when tracing is off.
    """
    if tracer() is None:
        return None
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if traceparent:
        return TraceContextTextMapPropagator().extract({"traceparent": traceparent}, context=Context())
    return Context()


# A W3C traceparent as goalrt keeps it (goals.trace_context): version 00, lower-case hex, ids not all zero.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def traceparent_problem(value: object, field: str = "traceparent") -> str | None:
    """Return one line saying why ``value`` is not a W3C traceparent goalrt keeps (naming ``field``), or None."""
    if isinstance(value, str) and _TRACEPARENT.fullmatch(value):
        return None
    shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "...")
    return (
        f"{field} must be a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, lower case,"
        f" ids not all zero), got {shown}"
    )


def current_traceparent() -> str | None:
    """Return the W3C traceparent of the current span (tracing on and a span current), else None."""
    if tracer() is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def failed(current: Span | None, error: str) -> None:
    """Mark a span (if any) as failed with ``error``."""
    if current is not None:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR, error))


__all__ = [
    "current_traceparent",
    "failed",
    "record",
    "root",
    "span",
    "traceparent_problem",
    "tracer",
    "use_tracer_provider",
]
