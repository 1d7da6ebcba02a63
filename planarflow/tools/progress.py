"""A progress line every few seconds: rewritten in place on a terminal, plain lines otherwise."""

import sys
import time


class Progress:
    """Call ``update(text)`` as often as you like; it prints at most once per ``every`` seconds.

    On a terminal the line is redrawn in place (carriage return); when the stream is a file or a
    pipe each report is its own plain line, so logs stay readable. ``enabled=False`` is silent.
    """

    def __init__(self, enabled=True, every=3.0, stream=None):
        self.enabled = bool(enabled)
        self.every = every
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.start = time.perf_counter()
        self.last = self.start
        self.dirty = False

    def elapsed(self):
        return time.perf_counter() - self.start

    def due(self):
        """Whether ``update`` would print now (so a caller can skip formatting its text)."""
        return self.enabled and time.perf_counter() - self.last >= self.every

    def update(self, text, force=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
            self.dirty = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        """End an in-place line so that what is printed next starts on a fresh line."""
        if self.enabled and self.dirty:
            self.stream.write("\n")
            self.stream.flush()
            self.dirty = False


def run_command(main, name):
    """Run a command's ``main()`` for ``python -m``: Ctrl-C ends it in one line with exit status
    130 (the shell's convention for SIGINT), and its return value is the exit status."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        sys.stderr.write(("\n" if sys.stderr.isatty() else "") + f"{name}: interrupted\n")
        return 130
