"""A clock the test moves by hand, for code that takes `clock: Callable[[], float]`."""


class Clock:
    """Monotonic seconds, starting at 1000; `clock.now += 30` moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
