"""Operator-facing messages in Japanese and English.

Every text a person reads while operating lm-co2 (CLI help and messages, validation reports, run
summaries, artifacts) is looked up here by key. Japanese is the default language. Modules add
their own catalogues with :func:`register` at import time, so a key lives beside the code that
uses it.

Examples
--------
>>> register({"demo.hello": {"ja": "こんにちは {name}", "en": "Hello {name}"}})
>>> message("demo.hello", "en", name="lm-co2")
'Hello lm-co2'
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
DEFAULT_LANGUAGE: Language = "ja"

_CATALOGUE: dict[str, dict[str, str]] = {}

#: Value of ``{lm_co2}`` in message texts, the start of every command a message suggests. The
#: ``lm-co2`` command sets it to ``lm-co2`` plus the ``--lang`` and ``--profile`` it was given
#: (:func:`suggested_command`), so that a suggested command runs on the same profile.
_COMMAND: contextvars.ContextVar[str] = contextvars.ContextVar("lmco2_suggested_command", default="lm-co2")

# C0 controls, DEL, C1 controls, and the bidi embedding, override and isolate characters.
_CONTROL_POINTS = (*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_ESCAPES: dict[str, dict[int, str]] = {
    "python": {point: repr(chr(point))[1:-1] for point in _CONTROL_POINTS},
    "json": {point: f"\\u{point:04x}" for point in _CONTROL_POINTS},
}


def register(entries: Mapping[str, Mapping[str, str]]) -> None:
    """Add message entries; each entry needs a text for every language.

    Raises
    ------
    ValueError
        If an entry lacks a language or a key is registered twice with other texts.
    """
    for key, texts in entries.items():
        missing = [lang for lang in LANGUAGES if lang not in texts]
        if missing:
            raise ValueError(f"message {key!r} has no text for {missing}; add one per language {LANGUAGES}")
        previous = _CATALOGUE.get(key)
        if previous is not None and previous != dict(texts):
            raise ValueError(f"message {key!r} is already registered with other texts")
        _CATALOGUE[key] = dict(texts)


def message(key: str, lang: str = DEFAULT_LANGUAGE, /, **values: object) -> str:
    """Return the text of ``key`` in ``lang`` with ``values`` filled in.

    An unknown language falls back to Japanese. An unknown key raises ``KeyError`` so that a
    missing translation fails in tests rather than showing a raw key to an operator.
    """
    texts = _CATALOGUE[key]
    text = texts.get(lang, texts[DEFAULT_LANGUAGE])
    if not values:
        return text
    if "{lm_co2}" in text:
        values = {"lm_co2": _COMMAND.get(), **values}
    return text.format(**values)


#: Language of log lines from code that has no settings, such as the storage layer. The daily
#: flow sets it to the profile's language (:func:`operator_language`).
_LANGUAGE: contextvars.ContextVar[str] = contextvars.ContextVar("lmco2_operator_language", default=DEFAULT_LANGUAGE)


def current_language() -> str:
    """Return the operator's language set by :func:`operator_language`, Japanese outside it."""
    return _LANGUAGE.get()


def operator_language(lang: str) -> contextlib.AbstractContextManager[None]:
    """Set the language of log lines from code without settings to ``lang`` while the block runs."""
    return _set_while_running(_LANGUAGE, lang)


def suggested_command(command: str) -> contextlib.AbstractContextManager[None]:
    """Fill ``{lm_co2}`` in messages with ``command`` while the block runs, for example ``lm-co2 --profile prod.yaml``."""
    return _set_while_running(_COMMAND, command)


@contextlib.contextmanager
def _set_while_running(variable: contextvars.ContextVar[str], value: str) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def escape_controls(text: str, *, keep: str = "", notation: Literal["python", "json"] = "python") -> str:
    r"""Write the control characters of ``text`` as escapes, so that a terminal shows them instead of acting on them.

    Escaped are the C0 controls, DEL, the C1 controls and the bidi embedding, override and isolate
    characters U+202A..U+202E and U+2066..U+2069. ESC and CSI start the sequences that move the
    cursor or clear the screen, CR moves back to the start of the line, and the bidi characters
    reorder the text shown after them. Other text, Japanese included, is returned unchanged.

    Parameters
    ----------
    text
        Text to print.
    keep
        Control characters that stay as they are, for example ``"\n"`` for the lines of a report.
    notation
        ``"python"`` writes the escapes as :func:`repr` does (``\x1b``, ``\r``, ``\u202e``).
        ``"json"`` writes ``\u001b``, ``\u202e``, which is valid inside a JSON string and decodes
        to the original character.

    Notes
    -----
    A backslash is not escaped, so ``\x1b`` in the output can also be these four characters in
    the input.
    """
    table = _ESCAPES[notation]
    if keep:
        table = {point: escape for point, escape in table.items() if chr(point) not in keep}
    return text.translate(table)


def keys() -> list[str]:
    """Return every registered key, sorted."""
    return sorted(_CATALOGUE)


def has_message(key: str) -> bool:
    """Return whether ``key`` is registered."""
    return key in _CATALOGUE


class LocalizedText:
    """Mixin for an exception whose text may exist in every language, made by :func:`localized_error`.

    :meth:`message` gives the text in the requested language, or ``str()`` of the exception when
    it was raised with a plain English text.
    """

    key: str | None = None
    values: Mapping[str, object] = {}

    def message(self, lang: str = DEFAULT_LANGUAGE) -> str:
        """Return the text in ``lang``."""
        if self.key is None:
            return str(self)
        return message(self.key, lang, **self.values)


_Error = TypeVar("_Error", bound=LocalizedText)


def localized_error(cls: type[_Error], key: str, /, **values: object) -> _Error:
    """Return an exception of ``cls`` whose ``str()`` is the English text of ``key`` and :meth:`~LocalizedText.message` any language.

    ``cls`` takes its text as its only argument. Pickling keeps the key and the values, because
    they are attributes of the instance.
    """
    error = cls(message(key, "en", **values))  # type: ignore[call-arg]
    error.key = key
    error.values = dict(values)
    return error


class OperatorError(LocalizedText, Exception):
    """An expected failure that the operator can fix, with its text in every language.

    The ``lm-co2`` command prints :meth:`message` as one line without a traceback and exits
    non-zero. ``str()`` gives the English text, for logs and the Prefect UI.

    Parameters
    ----------
    key
        Catalogue key of the text; it must be registered with :func:`register`.
    **values
        Values filled into the text.
    """

    key: str

    def __init__(self, key: str, /, **values: object) -> None:
        self.key = key
        self.values = dict(values)
        super().__init__(self.message("en"))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the key, the values and any attribute a subclass added when the error is pickled.
        return (_rebuild_operator_error, (type(self), self.key, self.values), self.__dict__)


class OperatorValueError(OperatorError, ValueError):
    """An invalid value the operator can fix, with its text in every language.

    Settings validators raise it. Pydantic reports a ``ValueError`` raised in a validator as a
    ``value_error`` and keeps the exception in the error's ``ctx``, so the settings error can
    show this text in the operator's language. ``str()`` gives the English text.
    """


def _rebuild_operator_error(cls: type[OperatorError], key: str, values: dict[str, object]) -> OperatorError:
    error = cls.__new__(cls)
    OperatorError.__init__(error, key, **values)
    return error
