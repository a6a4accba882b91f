"""How far a training job is, in words people can act on.

`TrainingProgress` turns the events of `models.training.train_model` (every step, every
validation image, every image of the post-processing choice) and the job's own stages
(loading, comparing with the active model, saving, ensemble members) into the job's
progress fraction and message. The message names the stage and its count, e.g.
"Training: step 120/1600 · epoch 3/40 · loss 0.412 · validation F1 0.512 (epoch 2)".

The fraction is the share of the expected time already spent, elapsed / (elapsed + time
left), with the time left estimated from the measured time per step and per validation
image. So the linear estimate every progress display makes (elapsed × (1 − f) / f: the job
pages, the CLI's tqdm bar) is this estimate. A time budget needs no special case: the
steps train_model reports as planned already fit it (in whole epochs, so a budget shorter
than one epoch still runs one), and so do the images of the post-processing choice.
"""
from __future__ import annotations

import math
import time
from typing import Callable

Report = Callable[[float, str, bool], None]     # (fraction, message, force)
# Guesses used until a time is measured: seconds per validation pixel over seconds per
# trained pixel, and one image of the post-processing choice over one validation image.
VALIDATION_COST = 0.5
CALIBRATION_COST = 2.0


class TrainingProgress:
    def __init__(self, report: Report, clock: Callable[[], float] = time.monotonic):
        self.report, self.clock = report, clock
        self.t0 = self.last = clock()
        self._dt = 0.0
        self.fraction = 0.0
        self.n_val = self.n_cal = self.members = 0
        self.val_pixels = self.step_pixels = 1.0
        self.compare = False
        self.member = 0                      # 0: the main model; m: ensemble member m
        self.main_seconds: float | None = None
        self._new_run()
        self.step_time = self.img_time = self.cal_time = 0.0
        self.steps_timed = self.imgs_timed = self.cal_timed = 0
        self.compared = 0

    def _new_run(self) -> None:
        self.stage = "loading"
        self.step, self.steps, self.epoch, self.epochs, self.per_epoch = 0, None, 0, 0, 1
        self.validations, self.val_done, self.cal_done = 0, 0, 0
        self.train_start: float | None = None
        self.last_score: tuple[str, float, int] | None = None

    def plan(self, n_val: int, n_calibration: int, val_pixels: float, step_pixels: float,
             compare: bool = False, members: int = 0) -> None:
        """What is ahead once the data is loaded: validation images per epoch, images the
        post-processing choice will go through, mean pixels of a validation image, pixels
        of one training step (batch × patch²), whether the new model is
        compared with an active one, and how many ensemble members follow."""
        self.n_val, self.n_cal = max(1, n_val), max(0, n_calibration)
        self.val_pixels, self.step_pixels = max(1.0, val_pixels), max(1.0, step_pixels)
        self.compare, self.members = compare, members

    # -- the job's own stages ------------------------------------------------------------
    def loading(self, done: int, total: int) -> None:
        self._tick()
        self._send(None, f"Loading annotated images: {done}/{total}", force=done == 0)

    def comparing(self, done: int, total: int) -> None:
        self._tick()
        if done and self.stage == "comparing":
            self.img_time, self.imgs_timed = self.img_time + self._dt, self.imgs_timed + 1
        self.stage, self.compared = "comparing", done
        self._send(None, f"Comparing with the active model: image {done}/{total}",
                   force=done == 0)

    def saving(self) -> None:
        self._tick()
        self.stage = "saving"
        self._send(None, "Saving the new model", force=True)

    def start_member(self, m: int) -> None:
        """Ensemble member `m` (1..members) starts training."""
        self._tick()
        if self.main_seconds is None and self.train_start is not None:
            self.main_seconds = self.clock() - self.train_start
        self.member = m
        self._new_run()
        self._send(None, f"Ensemble member {m}/{self.members}: starting", force=True)

    # -- train_model's events --------------------------------------------------------------
    def epoch_done(self, entry: dict) -> None:
        """train_model's `progress`: one entry per epoch (the score at that epoch)."""
        if entry.get("phase") == "calibration":
            return
        for key, name in (("val_f1", "F1"), ("val_dice", "Dice")):
            if entry.get(key) is not None:
                self.last_score = (name, float(entry[key]), int(entry["epoch"]))
                return

    def event(self, e: dict) -> None:
        """train_model's `on_step`."""
        self._tick()
        if self.train_start is None:
            self.train_start = self.last
        phase = e["phase"]
        if phase == "prepare":
            self.stage = "prepare"
            self._send(None, self._prefix() + f"preparing training targets: image "
                       f"{e['done'] + 1}/{e['total']}", force=e["done"] == 0)
        elif phase == "train":
            self.step_time += self._dt
            self.steps_timed += 1
            self.stage, self.step, self.steps = "train", e["step"], e["steps"]
            self.epoch, self.epochs = e["epoch"], e["epochs"]
            self.per_epoch = max(1, e.get("steps_per_epoch", 1))
            # the last step of an epoch is always written: every epoch shows its steps and
            # loss, even one shorter than the job's write throttle (0.5 s)
            self._send(None, self._train_message(e.get("loss")),
                       force=self.step % self.per_epoch == 0)
        elif phase == "validate":
            if e["done"] and self.stage == "validate":
                self.img_time, self.imgs_timed = self.img_time + self._dt, self.imgs_timed + 1
            self.stage, self.val_done = "validate", e["done"]
            self.steps = e.get("steps", self.steps)
            if e["done"] == e["total"]:       # this epoch's validation is over
                self.validations, self.val_done = self.validations + 1, 0
            self._send(None, self._prefix() + f"validating after epoch {e['epoch']}: image "
                       f"{e['done']}/{e['total']}", force=e["done"] == 0)
        elif phase == "calibrate":
            if e["done"] and self.stage == "calibrate":
                self.cal_time, self.cal_timed = self.cal_time + self._dt, self.cal_timed + 1
            self.stage, self.cal_done, self.n_cal = "calibrate", e["done"], e["total"]
            self._send(None, self._prefix() + "choosing how cells are cut, on the annotated "
                       f"images: image {e['done']}/{e['total']}", force=e["done"] == 0)

    # -- the estimate ----------------------------------------------------------------------
    def remaining(self) -> float | None:
        """Seconds left, or None before a training step has been timed."""
        if not self.steps_timed:
            return None
        t_step = self.step_time / self.steps_timed
        t_img = (self.img_time / self.imgs_timed if self.imgs_timed else
                 t_step * VALIDATION_COST * self.val_pixels / self.step_pixels)
        t_cal = self.cal_time / self.cal_timed if self.cal_timed else CALIBRATION_COST * t_img
        run_left = 0.0
        if self.stage in ("prepare", "train", "validate", "calibrate") and self.steps:
            if self.stage != "calibrate":
                epochs_left = math.ceil(self.steps / self.per_epoch) - self.validations
                imgs_left = epochs_left * self.n_val - (self.val_done if self.stage ==
                                                        "validate" else 0)
                run_left += (self.steps - self.step) * t_step + max(0, imgs_left) * t_img
            run_left += max(0, self.n_cal - self.cal_done) * t_cal
        run_total = self._run_elapsed() + run_left
        left = run_left
        if self.member == 0:
            if self.compare and self.stage not in ("saving",):
                left += max(0, self.n_val - self.compared) * t_img
            left += self.members * run_total
        else:
            left += (self.members - self.member) * (self.main_seconds or run_total)
        return left

    # -- helpers ---------------------------------------------------------------------------
    def _tick(self) -> None:
        """Note the time of this event; `_dt` is the time since the previous one."""
        now = self.clock()
        self._dt, self.last = now - self.last, now

    def _run_elapsed(self) -> float:
        return 0.0 if self.train_start is None else self.clock() - self.train_start

    def _prefix(self) -> str:
        return f"Ensemble member {self.member}/{self.members}: " if self.member else "Training: "

    def _train_message(self, loss) -> str:
        parts = [f"step {self.step}/{self.steps}", f"epoch {self.epoch}/{self.epochs}"]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        if self.last_score is not None:
            name, value, epoch = self.last_score
            parts.append(f"validation {name} {value:.3f} (epoch {epoch})")
        return self._prefix() + " · ".join(parts)

    def _send(self, fraction: float | None, message: str, force: bool = False) -> None:
        if fraction is None:
            left = self.remaining()
            if left is not None:
                elapsed = self.clock() - self.t0
                fraction = elapsed / max(1e-9, elapsed + left)
        if fraction is not None:
            self.fraction = min(0.99, max(self.fraction, fraction))
        self.report(self.fraction, message, force)
