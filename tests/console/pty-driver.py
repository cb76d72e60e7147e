#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Drive an interactive command through a pseudo-terminal, for the console tests.

Usage: pty-driver.py [--timeout SECONDS] [--transcript FILE] STEP... -- COMMAND [ARG...]

The command runs with a new PTY as its controlling terminal and as stdin, stdout and stderr
(24 rows, 80 columns). The steps run in order; the first that fails ends the driver with
status 1 and the transcript (everything the command wrote) on stderr. Steps:

  send:TEXT          type TEXT; Python escapes such as \\r, \\n, \\x1d are decoded
  expect:TEXT        wait until TEXT shows up in the output after the last match
  save-termios       remember the terminal settings
  check-raw          the settings are raw: no ICANON, no ECHO, no ISIG
  check-restored     the settings equal the saved ones
  resize:ROWS:COLS   change the window size (the command gets SIGWINCH)
  signal:NAME        send SIGNAME to the command, or to its only child when it has one (the
                     command may be nsenter, which runs the real program as its child)
  touch:PATH         create the file PATH
  wait-file:PATH     wait until PATH exists
  wait-cmd:COMMAND   run the shell command until it succeeds
  sleep:SECONDS      wait
  exit:STATUS        wait until the command exits with STATUS

Without an exit step the driver kills the command at the end and fails.
"""

import argparse
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time


class Failure(Exception):
    pass


class Driver:
    def __init__(self, argv, timeout):
        self.timeout = timeout
        self.output = b""
        self.position = 0
        self.saved = None
        self.status = None
        self.master, self.slave = os.openpty()
        self.set_size(24, 80)
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.master)
            # login_tty opens a new session and makes the PTY its controlling terminal. Keep a
            # duplicate of the slave in the parent, so that settings stay readable after exit.
            os.login_tty(os.dup(self.slave))
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)

    def set_size(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def pump(self, seconds):
        ready, _, _ = select.select([self.master], [], [], seconds)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:
            # All slave ends are closed except ours: nothing more will come. Wait a bit so a
            # caller polling for an exit does not spin.
            time.sleep(0.01)
            return False
        self.output += data
        return True

    def reap(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def deadline_loop(self, done, what):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if done():
                return
            self.pump(0.05)
        if done():
            return
        raise Failure(f"timed out after {self.timeout} s waiting for {what}")

    def step(self, step):
        kind, _, arg = step.partition(":")
        if kind == "send":
            os.write(self.master, arg.encode().decode("unicode_escape").encode("latin-1"))
        elif kind == "expect":
            needle = arg.encode().decode("unicode_escape").encode("latin-1")

            def found():
                index = self.output.find(needle, self.position)
                if index < 0:
                    return False
                self.position = index + len(needle)
                return True

            self.deadline_loop(found, repr(arg))
        elif kind == "save-termios":
            self.saved = termios.tcgetattr(self.slave)
        elif kind == "check-raw":
            lflag = termios.tcgetattr(self.slave)[3]
            if lflag & (termios.ICANON | termios.ECHO | termios.ISIG):
                raise Failure(f"terminal is not raw: lflag {lflag:#o}")
        elif kind == "check-restored":
            now = termios.tcgetattr(self.slave)
            if now != self.saved:
                raise Failure(f"terminal settings not restored: {self.saved} before, {now} after")
        elif kind == "resize":
            rows, cols = arg.split(":")
            self.set_size(int(rows), int(cols))
        elif kind == "signal":
            target = self.pid
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                    children = f.read().split()
                if len(children) == 1:
                    target = int(children[0])
            except OSError:
                pass
            os.kill(target, getattr(signal, "SIG" + arg))
        elif kind == "touch":
            open(arg, "a").close()
        elif kind == "wait-file":
            self.deadline_loop(lambda: os.path.exists(arg), f"file {arg}")
        elif kind == "wait-cmd":
            last = [None]

            def succeeded():
                last[0] = subprocess.run(arg, shell=True, capture_output=True, text=True)
                return last[0].returncode == 0

            try:
                self.deadline_loop(succeeded, f"command {arg!r}")
            except Failure as e:
                raise Failure(f"{e}; last output: {last[0].stdout}{last[0].stderr}")
        elif kind == "sleep":
            end = time.monotonic() + float(arg)
            while time.monotonic() < end:
                self.pump(end - time.monotonic())
        elif kind == "exit":
            self.deadline_loop(lambda: self.reap() is not None, "the command to exit")
            while self.pump(0.05):
                pass
            if self.status != int(arg):
                raise Failure(f"exit status {self.status}, expected {arg}")
        else:
            raise Failure(f"unknown step {step!r}")

    def kill(self):
        if self.reap() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def main():
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--transcript")
    parser.add_argument("steps", nargs="*")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("missing '--' before the command")
    split = argv.index("--")
    options = parser.parse_args(argv[:split])
    command = argv[split + 1:]

    driver = Driver(command, options.timeout)
    status = 0
    try:
        for step in options.steps:
            driver.step(step)
        if driver.reap() is None:
            raise Failure("the command is still running after the last step")
    except Failure as e:
        status = 1
        sys.stderr.write(f"pty-driver: {e}\n")
        sys.stderr.write(f"pty-driver: transcript: {driver.output!r}\n")
    finally:
        driver.kill()
        if options.transcript:
            with open(options.transcript, "wb") as f:
                f.write(driver.output)
    return status


if __name__ == "__main__":
    sys.exit(main())
