"""Issue 19 item 7: training progress moves with every step, says steps done/total, and its
fraction is proportional to time, so the linear estimate the pages and the CLI make from
it is the time left. The tracker is fed the events train_model sends, on a fake clock."""
import pytest

from app.services.training_progress import TrainingProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def run_fake_training(tracker, clock, reports, epochs=4, per_epoch=10, n_val=2, step_s=1.0,
                      img_s=2.0, n_cal=3, cal_s=3.0):
    """Drive the tracker like train_model does; note (true time left, report) pairs."""
    total = epochs * per_epoch * step_s + epochs * n_val * img_s + n_cal * cal_s
    seen = []

    def mark():
        seen.append((total - clock.t, reports[-1]))

    for k in range(3):
        tracker.loading(k, 2) if k < 2 else tracker.loading(2, 2)
    tracker.event({"phase": "prepare", "done": 0, "total": 1})
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            clock.t += step_s
            step += 1
            tracker.event({"phase": "train", "step": step, "steps": epochs * per_epoch,
                           "epoch": epoch, "epochs": epochs, "steps_per_epoch": per_epoch,
                           "loss": 1.0 / step})
            mark()
        for done in range(n_val + 1):
            if done:
                clock.t += img_s
            tracker.event({"phase": "validate", "done": done, "total": n_val, "epoch": epoch,
                           "step": step, "steps": epochs * per_epoch})
            mark()
        tracker.epoch_done({"epoch": epoch, "val_f1": 0.5 + epoch / 10})
    for done in range(n_cal + 1):
        if done:
            clock.t += cal_s
        tracker.event({"phase": "calibrate", "done": done, "total": n_cal})
        mark()
    return seen


def test_each_step_is_reported_with_steps_done_and_total():
    clock, reports = Clock(), []
    tracker = TrainingProgress(lambda f, m, force: reports.append((f, m, force)), clock)
    tracker.plan(n_val=2, n_calibration=3, val_pixels=256 ** 2, step_pixels=4 * 64 ** 2)
    run_fake_training(tracker, clock, reports)
    messages = [m for _f, m, _force in reports]
    assert messages[0] == "Loading annotated images: 0/2"
    steps = [m for m in messages if m.startswith("Training: step")]
    assert len(steps) == 40 and steps[0].startswith("Training: step 1/40 · epoch 1/4 · loss")
    assert "step 11/40 · epoch 2/4" in steps[10] and "validation F1 0.600 (epoch 1)" in steps[10]
    assert "Training: validating after epoch 4: image 2/2" in messages
    assert messages[-1] == ("Training: choosing how cells are cut, on the annotated images: "
                            "image 3/3")
    fractions = [f for f, _m, _force in reports]
    assert fractions == sorted(fractions) and 0 < fractions[-1] <= 0.99
    assert len(set(fractions)) > 40          # it moves with every step, not once per epoch
    # stage changes are written at once; steps go through the job's throttle, except the
    # last step of each epoch (so an epoch shorter than the throttle still shows its loss)
    assert all(force for _f, m, force in reports if m.endswith("image 0/2"))
    forced = [m for _f, m, force in reports if force and m.startswith("Training: step")]
    assert [m.split(" · ")[0] for m in forced] == [f"Training: step {n}/40"
                                                   for n in (10, 20, 30, 40)]


def test_the_fraction_makes_the_linear_estimate_the_time_left():
    clock, reports = Clock(), []
    tracker = TrainingProgress(lambda f, m, force: reports.append((f, m, force)), clock)
    tracker.plan(n_val=2, n_calibration=3, val_pixels=256 ** 2, step_pixels=4 * 64 ** 2)
    seen = run_fake_training(tracker, clock, reports, cal_s=4.5)
    # once a validation image has been timed, elapsed * (1 - f) / f is the true time left
    # (the pages' and tqdm's estimate), give or take the guess for the post-processing
    # choice (2 validation images each) until its first image is timed
    for true_left, (f, message, _force) in seen[13:]:
        elapsed = 40 * 1.0 + 4 * 2 * 2.0 + 3 * 4.5 - true_left
        estimate = elapsed * (1 - f) / f
        assert estimate == pytest.approx(true_left, rel=0.1, abs=3.0), message


def test_comparing_saving_and_ensemble_members_are_named():
    clock, reports = Clock(), []
    tracker = TrainingProgress(lambda f, m, force: reports.append((f, m, force)), clock)
    tracker.plan(n_val=2, n_calibration=0, val_pixels=100, step_pixels=100, compare=True,
                 members=1)
    tracker.event({"phase": "train", "step": 1, "steps": 2, "epoch": 1, "epochs": 1,
                   "steps_per_epoch": 2, "loss": 0.5})
    tracker.comparing(0, 2)
    clock.t += 1
    tracker.comparing(2, 2)
    assert reports[-1][1] == "Comparing with the active model: image 2/2"
    tracker.saving()
    assert reports[-1][1] == "Saving the new model" and reports[-1][2]
    tracker.start_member(1)
    clock.t += 1
    tracker.event({"phase": "train", "step": 1, "steps": 2, "epoch": 1, "epochs": 1,
                   "steps_per_epoch": 2, "loss": 0.5})
    assert reports[-1][1].startswith("Ensemble member 1/1: step 1/2 · epoch 1/1")
