"""``Scorer``: one message's score from the content rules, the classifier and the sender lists.

Kept apart from the filter (``scoring.py``) and its wiring so that the scoring process
(``scorechild.py``) imports only this, the rules, the classifier and the standard library:
it runs once per server process, and every module it imports is memory in each of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from txmailhost.spam import rules
from txmailhost.spam.bayes import TokenStore
from txmailhost.spam.sample import Sample
from txmailhost.spam.tokens import parse_sender, tokens

_BAYES_BANDS = (  # (upper bound of the probability, rule)
    (0.01, "BAYES_00"),
    (0.05, "BAYES_05"),
    (0.20, "BAYES_20"),
    (0.50, None),
    (0.80, "BAYES_50"),
    (0.95, "BAYES_80"),
    (0.99, "BAYES_95"),
    (0.999, "BAYES_99"),
    (1.01, "BAYES_999"),
)


def bayes_rule(probability: float) -> rules.Rule | None:
    """The BAYES_xx rule for a classifier probability (None in the unsure middle)."""
    for bound, name in _BAYES_BANDS:
        if probability < bound:
            return rules.BY_NAME[name] if name else None
    return None


def sender_addresses(sample: Sample, envelope_sender: str | None) -> list[str]:
    found = [envelope_sender] if envelope_sender else []
    _name, address = parse_sender(sample.header("from") or "")
    if address:
        found.append(address)
    return found


@dataclass(frozen=True)
class Score:
    """A message's score for one recipient, and the rules behind it."""

    total: float
    hits: tuple[rules.Rule, ...]
    bayes: float | None  # the classifier's probability, when it was asked and trained
    threshold: float | None = None  # the recipient's own Junk threshold, when they set one

    def fields(self, required: float) -> tuple[tuple[str, str], ...]:
        """SpamAssassin's fields: X-Spam-Status (verdict, score, threshold, rules, the
        classifier's probability when it spoke), X-Spam-Score, X-Spam-Report, X-Spam-Flag."""
        is_spam = self.total >= required
        names = ",".join(rule.name for rule in self.hits) or "none"
        status = f"{'Yes' if is_spam else 'No'}, score={self.total:.1f} required={required:.1f}"
        report = "\n".join(
            f"{rule.score:5.1f} {rule.name:<20} {rule.description}" for rule in self.hits
        )
        if self.bayes is not None:  # SpamAssassin adds key=value items here too (autolearn=)
            status += f" tests={names} bayes={self.bayes:.4f}"
        else:
            status += f" tests={names}"
        fields = [("X-Spam-Status", status), ("X-Spam-Score", f"{self.total:.1f}")]
        if report:
            fields.append(("X-Spam-Report", "\n" + report))
        if is_spam:
            fields.append(("X-Spam-Flag", "YES"))
        return tuple(fields)


class Scorer:
    """Rules + classifier + sender lists over a sample; used by the filter and the CLI."""

    def __init__(self, store: TokenStore | None, authserv_id: str = "") -> None:
        self.store = store
        self.authserv_id = authserv_id

    def score(
        self,
        sample: Sample,
        owner: str | None,
        envelope_sender: str | None = None,
        connection: list[rules.Rule] | tuple[rules.Rule, ...] = (),
    ) -> Score:
        """``connection``: what was decided before the content is read — what
        ``connection.ConnectionChecks`` found about the client, rspamd's weighted score."""
        return self.score_each(sample, [owner], envelope_sender, connection)[0]

    def score_each(
        self,
        sample: Sample,
        owners: list[str | None],
        envelope_sender: str | None = None,
        connection: list[rules.Rule] | tuple[rules.Rule, ...] = (),
        arrival: float | None = None,
    ) -> list[Score]:
        """``score`` for each of ``owners``, the content rules run and the tokens made once;
        ``arrival``: when the message arrived, if not now (``scoring.arrival``)."""
        now = time.time() if arrival is None else arrival
        context = rules.Context(now=now, authserv_id=self.authserv_id)
        content = list(connection) + rules.content_hits(sample, context)
        made: list[set[str]] = []

        def found() -> set[str]:
            if not made:
                made.append(tokens(sample))
            return made[0]

        senders = sender_addresses(sample, envelope_sender)
        scores = []
        for owner in owners:
            hits = list(content)
            probability = threshold = None
            if self.store is not None:
                standing = self.store.standing(owner, senders)
                threshold = standing.threshold
                if standing.listed == "block":
                    hits.append(rules.BY_NAME["USER_BLOCKED"])
                elif standing.listed == "allow" and rules.BY_NAME["AUTH_DMARC_FAIL"] not in hits:
                    hits.append(rules.BY_NAME["USER_ALLOWED"])
                judged = self.store.judge_standing(owner, standing, found)
                if judged is not None:
                    probability = judged.probability
                    band = bayes_rule(probability)
                    if band is not None:
                        hits.append(band)
            total = round(sum(rule.score for rule in hits), 1)
            scores.append(Score(total, tuple(hits), probability, threshold))
        return scores
