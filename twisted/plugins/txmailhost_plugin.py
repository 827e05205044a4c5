"""The ``twistd txmailhost`` entry point; imports nothing heavy so ``twistd --help`` stays fast."""

from twisted.application.service import ServiceMaker

txmailhost = ServiceMaker(
    "txmailhost",
    "txmailhost.tap",
    "A complete mail server: ESMTP, submission, IMAP4, POP3 and a relay queue over Maildir",
    "txmailhost",
)
