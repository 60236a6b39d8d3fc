"""Secrets named in config by where they live (an env var or a mounted file), read when used.

Reading at send time picks up a rotated Kubernetes Secret without a restart. A ``Secret`` never
shows its value in a repr, so it cannot leak through a log line or an exception by accident.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping


class SecretError(Exception):
    """A secret could not be read; the message names the setting and the fix, never the value."""


@dataclasses.dataclass(frozen=True)
class Secret:
    value: str = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return "<redacted>"


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """``<setting>_env`` or ``<setting>_file`` of one sink; exactly one is set (config checks it)."""

    setting: str  # e.g. "slack-oncall.webhook_url", for messages
    env: str | None = None
    file: pathlib.Path | None = None

    def read(self, environ: Mapping[str, str]) -> Secret:
        if self.env is not None:
            value = environ.get(self.env, "").strip()
            if not value:
                raise SecretError(
                    f"{self.setting}_env: environment variable {self.env} is unset or empty; "
                    f"set it (e.g. from a Kubernetes Secret) or use {self.setting}_file"
                )
            return Secret(value)
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretError(
                    f"{self.setting}_file: cannot read {self.file} ({exc.strerror}); "
                    f"mount the secret there or use {self.setting}_env"
                ) from None
            if not value:
                raise SecretError(f"{self.setting}_file: {self.file} is empty; put the secret in it")
            return Secret(value)
        raise SecretError(f"{self.setting}: give {self.setting}_env or {self.setting}_file")
