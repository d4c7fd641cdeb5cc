"""The live view on a real terminal (and `--progress quiet` on a pipe): `pipeline
build-all` in a tmux pane (a real pty, a real terminal emulator), on the real sandbox
and a busybox base, its screen captured every 0.2 s. Checked: the view redraws at least
once a second while a step is silent, a running step shows its timer and last output
lines, running and queued look different, and a failure's log is on the screen while
other steps still run. Screenshots of those moments are below as text (timers and
spinners masked)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/setup)"),
]

FLEET = """
image "base" {
  from = "busybox:latest"
  run { command = "for i in 1 2 3 4 5; do echo tick $i; sleep 1; done" }
}
image "fail" {
  from = image.base
  run { command = "echo oops; sleep 1; exit 3" }
  tags = ["t/fail:1"]
}
image "slow" {
  from = image.base
  run { command = "sleep 4; echo slow done" }
  tags = ["t/slow:1"]
}
image "later" {
  from = image.base
  run { command = "echo later; sleep 1" }
  tags = ["t/later:1"]
}
"""

# the base step, 3 s in (its last 3 lines of output under it)
RUNNING = """\
* #.#s [0/4] 1 running, 0 queued; 0 cached, 0 pulled, 0 built, 0 failed
  * running    #.#s  RUN for i in 1 2 3 4 5; do echo tick $i…  image.fail, +2
      │ tick 1
      │ tick 2
      │ tick 3
  image        steps  cached  pulled  built  failed  now
  image.fail     0/2       0       0      0       0  RUN for i in 1 2 3 …
  image.later    0/2       0       0      0       0  RUN for i in 1 2 3 …
  image.slow     0/2       0       0      0       0  RUN for i in 1 2 3 …"""

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def masked(screen: str) -> str:
    """A screen with its spinners and clock figures masked, blank lines dropped."""
    screen = re.sub(f"[{SPINNER}]", "*", screen)
    screen = re.sub(r"\b\d+(m\d\d)?\.?\d*s\b", "#.#s", screen)
    return "\n".join(line.rstrip() for line in screen.splitlines() if line.strip())


def step_clock(screen: str, label: str) -> str | None:
    """The timer of the running step ``label`` on the screen, if it is there."""
    m = re.search(rf"[{SPINNER}] running +(\S+)  {re.escape(label)}", screen)
    return m.group(1) if m else None


def test_live_view_under_a_real_terminal(busybox_store: Cli, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fleet.hcl").write_text(FLEET)
    sock = f"pipeline-test-{os.getpid()}"
    env = f"PIPELINE_STORE={tmp_path / 'store'} PYTHONPATH={REPO}"
    command = f"cd {tmp_path} && {env} {sys.executable} -m pipeline build-all -j 2; echo EXIT=$?"
    tmux = ["tmux", "-L", sock]
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "110", "-y", "30", "-s", "t", f"{command}; sleep 60"],
        check=True,
    )
    frames: list[tuple[float, str]] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < 90:
            shot = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True
            ).stdout
            frames.append((time.monotonic() - started, shot))
            if "EXIT=" in shot:
                break
            time.sleep(0.2)
        history = subprocess.run(
            [*tmux, "capture-pane", "-p", "-S", "-200", "-t", "t"], capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    shown = "\n\n".join(f"--- {t:.1f}s\n{s.rstrip()}" for t, s in frames)
    assert "EXIT=1" in frames[-1][1], shown  # the build ends (one step failed)

    # the base step, 3 s in: a timer, and its last output lines under it
    running = [masked(s) for _, s in frames if "│ tick 3" in s and "│ tick 4" not in s]
    assert RUNNING in running, shown

    # while "sleep 4" runs, silent, its timer moves at least once a second
    during = [(t, step_clock(s, "RUN sleep 4")) for t, s in frames]
    during = [(t, c) for t, c in during if c is not None]
    changes = [
        t for (t, c), (_, before) in zip(during[1:], during[:-1], strict=True) if c != before
    ]
    assert len(during) >= 10 and changes, shown
    marks = [during[0][0], *changes, during[-1][0]]
    assert max(b - a for b, a in zip(marks[1:], marks[:-1], strict=True)) < 1.2

    # running and queued look different (two workers, three steps ready at once)
    both = [s for _, s in frames if "· queued" in s and re.search(r"[⠋-⣿] running", s)]
    assert both, shown

    # the failure's log is on the screen while another step still runs
    early = [
        s
        for _, s in frames
        if "failed (exit code 3)" in s and "| oops" in s and re.search(r"running .*sleep 4", s)
    ]
    assert early, shown

    # at the end the view is gone; what stays: the finished steps, the log, the table
    assert "step 'RUN echo oops; sleep 1; exit 3' failed (exit code 3)" in history
    assert re.search(r"^\[\d/4\] built   RUN sleep 4; echo slow done", history, re.M), history
    assert "4 unique nodes: 3 built, 0 cached, 0 pulled" in history, history
    assert not re.search(f"[{SPINNER}] running", frames[-1][1]), frames[-1][1]


def test_quiet_prints_errors_and_the_final_line_only(busybox_store: Cli, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fleet.hcl").write_text(FLEET.replace("sleep 4", "sleep 0").replace("sleep 1", "true"))
    proc = busybox_store("build-all", "--progress", "quiet", check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [proc.stdout.strip()]  # one line, no table
    assert proc.stdout.startswith("4 unique nodes: 3 built, 0 cached, 0 pulled")
    assert proc.stderr.splitlines() == [
        "specs/fleet.hcl:8:3: step 'RUN echo oops; true; exit 3' failed (exit code 3);"
        " apps: image.fail",
        "    | oops",
        "specs/fleet.hcl:8:3: step 'RUN echo oops; true; exit 3' failed (exit code 3);"
        " apps: image.fail",
        "1 step(s) failed; their output is above",
    ]
