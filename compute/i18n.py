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

from collections.abc import Mapping
from typing import Literal

Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
DEFAULT_LANGUAGE: Language = "ja"

_CATALOGUE: dict[str, dict[str, str]] = {}


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
    return text.format(**values) if values else text


def keys() -> list[str]:
    """Return every registered key, sorted."""
    return sorted(_CATALOGUE)
