"""Sandbox uids across processes: two evaluations running at once (two `workbench eval`s, two test workers) never
run programs under the same uid, so one cannot signal the other's processes or use up its process limit."""

import os
import subprocess
import sys

import pytest

from workbench.evaluate.sandbox_launch import _acquire_uid_slot, release_slot

HOLD = ("import sys; from workbench.evaluate.sandbox_launch import _acquire_uid_slot\n"
        "print(_acquire_uid_slot(), flush=True)\nsys.stdin.read()\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="uid slots are used as root only (unprivileged: the caller's uid)")
def test_a_slot_held_by_another_process_is_not_handed_out_again():
    other = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = int(other.stdout.readline())
        ours = [_acquire_uid_slot() for _ in range(3)]
        assert theirs not in ours and len(set(ours)) == 3, (theirs, ours)
        for slot in ours:
            release_slot(slot)
        other.stdin.close()
        other.wait(30)
        # the other process ended: its slot (its flock) is free again. Another sandbox on the host (a second test
        # worker) may hold or free lower slots meanwhile, so take the lowest free ones until theirs comes back
        taken = []
        while theirs not in taken and len(taken) < theirs + 16:
            taken.append(_acquire_uid_slot())
        for slot in taken:
            release_slot(slot)
        assert theirs in taken, (theirs, taken)
    finally:
        other.kill()
