"""A progress line every few seconds: rewritten in place on a terminal, plain lines otherwise.

Nothing printed may cost the work: a stream that is closed, or a pipe whose reader has gone
(``python demo.py 2>&1 | head -1``), only stops the printing (``write``).
"""

import os
import sys
import time


def write(stream, text):
    """Write and flush ``text``; False if the stream is gone (closed, a broken pipe, a full disk).

    A standard stream that has gone is pointed at /dev/null, so that later prints — and the
    interpreter's own flush at exit — are silently dropped instead of raising."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except (OSError, ValueError):            # BrokenPipeError, ENOSPC; ValueError: a closed file
        for std in (sys.stdout, sys.stderr):
            if stream is std:
                try:
                    os.dup2(os.open(os.devnull, os.O_WRONLY), std.fileno())
                except (OSError, ValueError):
                    pass
        return False


class Progress:
    """Call ``update(text)`` as often as you like; it prints at most once per ``every`` seconds.

    On a terminal the line is redrawn in place (carriage return); when the stream is a file or a
    pipe each report is its own plain line, so logs stay readable. ``enabled=False`` is silent.
    """

    def __init__(self, enabled=True, every=3.0, stream=None):
        self.enabled = bool(enabled)
        self.every = every
        self.stream = sys.stderr if stream is None else stream
        self.tty = isatty(self.stream)
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
        self.dirty = self.tty
        if not write(self.stream, "\r" + text + "\033[K" if self.tty else text + "\n"):
            self.enabled = False                 # the stream has gone: the work goes on silently

    def close(self):
        """End an in-place line so that what is printed next starts on a fresh line."""
        if self.enabled and self.dirty:
            self.enabled = write(self.stream, "\n")
            self.dirty = False


def run_command(main, name):
    """Run a command's ``main()`` for ``python -m``: Ctrl-C ends it in one line with exit status
    130 (the shell's convention for SIGINT), and its return value is the exit status."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        write(sys.stderr, ("\n" if isatty(sys.stderr) else "") + f"{name}: interrupted\n")
        return 130


def isatty(stream):
    """stream.isatty(), False for a stream without one or a closed one."""
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def say(text=""):
    """print for commands: a closed stdout (… | head -1) stops the printing, never the work."""
    write(sys.stdout, text + "\n")
