"""drift_logger: the serving-side half of drift-agent.

A model server logs one record per prediction to Kafka with ``PredictionLogger``; drift-agent
reads them. Importing this package loads only the standard library: kafka-python is imported
when the first producer is created, numpy and torch are never imported (the logger handles
their arrays and tensors only when the server has loaded them).
"""

from drift_logger.logger import LoggerStats, PredictionLogger, RequestScope, default_prediction
from drift_logger.sender import Producer, ProducerFactory, kafka_producer_factory
from drift_logger.timing import GpuSpan, PerfCounterEvent, TimingEvent

__all__ = [
    "GpuSpan",
    "LoggerStats",
    "PerfCounterEvent",
    "PredictionLogger",
    "Producer",
    "ProducerFactory",
    "RequestScope",
    "TimingEvent",
    "default_prediction",
    "kafka_producer_factory",
]
