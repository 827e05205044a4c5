"""The ``twistd txmailhost`` entry point; imports nothing heavy so ``twistd --help`` stays fast."""

from twisted.application.service import ServiceMaker

txmailhost = ServiceMaker(
    "txmailhost",
    "txmailhost.tap",
    "A complete mail server: ESMTP, submission, POP3 (IMAP and relay to follow) over Maildir",
    "txmailhost",
)
