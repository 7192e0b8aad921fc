"""Forward hooks that are installed together and removed together, whatever ends their use."""

from __future__ import annotations

from typing import Any, TypeVar

Self = TypeVar("Self", bound="HookSet")


class HookSet:
    """A set of torch hook handles: `install()` registers them (once), `remove()` and leaving `with` remove them all.

    Subclasses say which hooks they need in `_register`; removal is safe to repeat and also runs
    when the `with` block ends by an exception or KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def _register(self) -> list[Any]:
        """Register this set's hooks and return their handles."""
        raise NotImplementedError

    def install(self: Self) -> Self:
        self.remove()
        self._handles = self._register()
        return self

    def remove(self) -> None:
        """Remove every hook; safe to call any number of times."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self: Self) -> Self:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
