"""The password rule, in one place: the users screen, ``create-user`` and the demo all ask
``password_problem``.

Length alone lets ``passwordpassword`` through and a hand-written list of bad passwords is
always behind, so guessability is judged by zxcvbn (Dropbox's estimator: dictionaries of
common passwords, names and words, keyboard walks, repeats, dates, l33t), with the user's own
name among the words it tries. Score 3 is zxcvbn's "safely unguessable" (about 10^10 guesses).
"""
from __future__ import annotations

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 200
MIN_SCORE = 3
# zxcvbn refuses longer input (its matching grows with the square of the length); a longer
# password is at least as strong as its first 72 characters.
_JUDGED_CHARS = 72
# Words anyone attacking this product would try first.
_PRODUCT_WORDS = ("console", "jobs", "admin", "operator", "viewer")


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` may not be used by ``username``, for people; None when it may."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters (this one has {len(password)})."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    verdict = zxcvbn(password[:_JUDGED_CHARS], user_inputs=[username, *_PRODUCT_WORDS])
    if verdict["score"] >= MIN_SCORE:
        return None
    feedback = verdict["feedback"]
    reasons = [feedback.get("warning") or "", *feedback.get("suggestions", [])]
    advice = " ".join(reason for reason in reasons if reason)
    if username and username.casefold() in password.casefold():
        advice = f"It contains the username. {advice}"
    return ("This password is too easy to guess. "
            + (advice or "Add another word or two; uncommon words are better."))
