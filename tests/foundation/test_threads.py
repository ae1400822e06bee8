"""Thread choice for CPU work: every core on a quiet machine, one once other processes run."""

import os
import threading

from alignlab.threads import busy_cores, threads_for_machine


def test_threads_follow_the_cores_other_processes_keep_busy():
    assert threads_for_machine(cores=2, busy=0.0) == 2
    assert threads_for_machine(cores=2, busy=0.4) == 2
    assert threads_for_machine(cores=2, busy=1.0) == 1
    assert threads_for_machine(cores=2, busy=6.0) == 1  # never below one
    assert threads_for_machine(cores=8, busy=2.6) == 5


def test_busy_cores_does_not_count_this_process():
    """A core kept busy by this very process (as a build's tokenizer training is, a moment before it
    picks threads) must not read as a competing job: the load average would count it, busy_cores
    subtracts it. Without the subtraction the spinning reading would be ≈ 1 core higher."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    quiet = busy_cores(interval=0.3)
    t = threading.Thread(target=spin)
    t.start()
    try:
        spinning = busy_cores(interval=0.3)
    finally:
        stop.set()
        t.join()
    quiet = max(quiet, busy_cores(interval=0.3))
    assert 0.0 <= spinning <= (os.cpu_count() or 1)
    assert spinning < quiet + 0.6, (spinning, quiet)
