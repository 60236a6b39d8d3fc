"""Sends a checkpoint must see acknowledged.

``KafkaProducer.flush`` returns once every record sent before it has completed, acknowledged *or
failed* (a record over the topic's ``max.message.bytes``, retries used up): it raises only on its
own timeout. A stage that commits its input offsets after a flush must therefore look at its sends'
futures, or a failed fragment, state or action would be committed past and lost. A librdkafka
producer's sends (``ingest.producers``) have the same shape.
"""

from __future__ import annotations

from agent.ingest import producers


class PendingSends:
    """The futures of the sends since the last checkpoint."""

    def __init__(self) -> None:
        self._futures: list[producers.Delivery] = []

    def add(self, future: producers.Delivery) -> None:
        self._futures.append(future)

    def take_failure(self) -> BaseException | None:
        """After a flush: the first failed send's error (None when all were acknowledged); forgets
        them all either way (a checkpoint that fails reads its input again and sends anew)."""
        futures, self._futures = self._futures, []
        for future in futures:
            if future.is_done and future.failed():
                error = future.exception
                return error if isinstance(error, BaseException) else RuntimeError(str(error))
        return None
