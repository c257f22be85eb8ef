"""Step `classify-recipients`: which recipients live here, and which leave through the relay."""

from __future__ import annotations

from gateway.lookups import Reader
from gateway.pipeline.context import Submission


def classify_recipients(known: Reader, submission: Submission) -> None:
    seen: set[str] = set()
    for rcpt in submission.recipients:
        key = rcpt.lower()
        if key in seen:
            continue
        seen.add(key)
        destination = known.destination(key)
        if destination.hosted:
            # An alias delivers to its address (an unknown one is refused at store time).
            hosted = destination.address if destination.address is not None else key
            if hosted not in submission.hosted:
                submission.hosted.append(hosted)
        else:
            submission.external.append(rcpt)
