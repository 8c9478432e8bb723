"""Progress helpers: the time left in a step of a long job."""

from napari_chromosome_sort.progress import Progress, StepTimer


def test_step_timer_estimates_the_time_left_in_the_current_step():
    now = [0.0]
    timer = StepTimer(clock=lambda: now[0])
    fit = "choosing the model design: fit {} of 100"
    assert timer.left(Progress(0, 100, fit.format(0))) == ""  # nothing known yet
    now[0] = 1.0
    assert timer.left(Progress(10, 100, fit.format(10))) == ""  # too early to tell
    now[0] = 20.0
    assert timer.left(Progress(20, 100, fit.format(20))) == "about 80 s left in this step"
    now[0] = 60.0
    assert timer.left(Progress(30, 100, fit.format(30))) == "about 2 min left in this step"
    # a new step starts the clock again
    now[0] = 61.0
    assert timer.left(Progress(0, 652, "reading crops with the network: 0 of 652")) == ""
    now[0] = 71.0
    left = timer.left(Progress(326, 652, "reading crops with the network: 326 of 652"))
    assert left == "about 10 s left in this step"
