"""Step `classify-recipients`: which recipients live here, and which leave through the relay."""

from __future__ import annotations

import sqlalchemy.orm as so

from gateway import accounts
from gateway.pipeline.context import Submission


def classify_recipients(session: so.Session, submission: Submission) -> None:
    seen: set[str] = set()
    for rcpt in submission.recipients:
        key = rcpt.lower()
        if key in seen:
            continue
        seen.add(key)
        if accounts.is_hosted(session, rcpt):
            # An alias delivers to its address (an unknown one is refused at store time).
            target = accounts.find_deliverable(session, key)
            hosted = target.address if target is not None else key
            if hosted not in submission.hosted:
                submission.hosted.append(hosted)
        else:
            submission.external.append(rcpt)
