"""The states a row can be in, named once: an image's status, an annotation's review state,
a job's state. They are `StrEnum`s, so they compare equal to (and are stored as) the plain
strings the database holds; code writes `ImageStatus.excluded`, never "excluded"."""
from __future__ import annotations

from enum import StrEnum


class ImageStatus(StrEnum):
    new = "new"                    # imported, nobody has opened it
    in_progress = "in_progress"    # someone has a draft or has opened it
    annotated = "annotated"        # has a saved annotation
    reviewed = "reviewed"          # its newest annotation was accepted by a reviewer
    excluded = "excluded"          # left out of the queue, training and exports


QUEUE_STATUSES = (ImageStatus.new, ImageStatus.in_progress)   # still waiting for a person


class ReviewState(StrEnum):
    submitted = "submitted"        # saved, waiting for a reviewer
    returned = "returned"          # sent back to its author with a comment
    accepted = "accepted"          # ground truth (also every imported annotation)


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_JOB_STATES = (JobState.queued, JobState.running)
FINISHED_JOB_STATES = (JobState.done, JobState.failed, JobState.cancelled)
