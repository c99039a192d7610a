"""Operator messages of invalid settings, in every language.

Pydantic's own texts are English only. Each error type an operator meets in a profile has a
template here that names the setting's dotted path, the value that arrived, what is expected and
what to do. Any other type gets a generic text. :class:`SettingsError` carries one text per
problem and language, and the ``lm-co2`` command prints it.
"""

from __future__ import annotations

import difflib
import itertools
import re
import reprlib
import typing
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from compute.i18n import DEFAULT_LANGUAGE, LANGUAGES, OperatorError, message, register
from compute.settings import ENV_PREFIX, SHIPPED_EXAMPLE, Settings, mask_url_credentials

register(
    {
        "settings.invalid": {
            "ja": "プロファイル {profile!r} の設定が不正です（LMCO2_* 環境変数による上書きを含む）: {detail}",
            "en": "The settings of profile {profile!r} are invalid (LMCO2_* environment overrides included): {detail}",
        },
        "settings.invalid.many": {
            "ja": "プロファイル {profile!r} の設定が不正です（{count} 件、LMCO2_* 環境変数による上書きを含む）:{detail}",
            "en": "The settings of profile {profile!r} are invalid ({count} problems, LMCO2_* environment overrides included):{detail}",
        },
        "settings.error.missing": {
            "ja": "必須の設定 {path} がありません。プロファイルに {path} を書いてください（例: " + SHIPPED_EXAMPLE + "）。",
            "en": "Required setting {path} is missing. Add {path} to the profile, as in " + SHIPPED_EXAMPLE + ".",
        },
        "settings.error.not_integer": {
            "ja": "設定 {path} の値 {value} は整数ではありません。整数を指定してください（例: 4）。",
            "en": "Setting {path} has the value {value}, which is not an integer. Give a whole number, for example 4.",
        },
        "settings.error.not_number": {
            "ja": "設定 {path} の値 {value} は数値ではありません。数値を指定してください（例: 2.5）。",
            "en": "Setting {path} has the value {value}, which is not a number. Give a number, for example 2.5.",
        },
        "settings.error.not_boolean": {
            "ja": "設定 {path} の値 {value} は真偽値ではありません。true か false を指定してください。",
            "en": "Setting {path} has the value {value}, which is not a boolean. Give true or false.",
        },
        "settings.error.not_string": {
            "ja": "設定 {path} の値 {value} は文字列ではありません。文字列を指定してください（YAML では引用符で囲むと確実です）。",
            "en": "Setting {path} has the value {value}, which is not a string. Give a string; quoting it in YAML makes sure.",
        },
        "settings.error.not_mapping": {
            "ja": "設定 {path} の値 {value} はマッピング（キーと値の組）ではありません。{path} の下に「キー: 値」の行を字下げして書いてください。",
            "en": "Setting {path} has the value {value}, which is not a mapping of keys to values. Write key: value lines indented under {path}.",
        },
        "settings.error.not_list": {
            "ja": "設定 {path} の値 {value} はリストではありません。[a, b] の形か、「- 」で始まる行で書いてください。",
            "en": "Setting {path} has the value {value}, which is not a list. Write it as [a, b] or as lines that start with '- '.",
        },
        "settings.error.not_datetime": {
            "ja": "設定 {path} の値 {value} は日時ではありません。ISO 8601 の日時を指定してください（例: 2000-01-01T00:00:00Z）。",
            "en": "Setting {path} has the value {value}, which is not a date and time. Give an ISO 8601 time, for example 2000-01-01T00:00:00Z.",
        },
        "settings.error.greater_than": {
            "ja": "設定 {path} の値 {value} は範囲外です。{gt} より大きい値を指定してください。",
            "en": "Setting {path} has the value {value}, which is out of range. Give a value greater than {gt}.",
        },
        "settings.error.greater_than_equal": {
            "ja": "設定 {path} の値 {value} は範囲外です。{ge} 以上の値を指定してください。",
            "en": "Setting {path} has the value {value}, which is out of range. Give a value of at least {ge}.",
        },
        "settings.error.less_than": {
            "ja": "設定 {path} の値 {value} は範囲外です。{lt} 未満の値を指定してください。",
            "en": "Setting {path} has the value {value}, which is out of range. Give a value less than {lt}.",
        },
        "settings.error.less_than_equal": {
            "ja": "設定 {path} の値 {value} は範囲外です。{le} 以下の値を指定してください。",
            "en": "Setting {path} has the value {value}, which is out of range. Give a value of at most {le}.",
        },
        "settings.error.choice": {
            "ja": "設定 {path} の値 {value} は選べる値ではありません。次のいずれかを指定してください: {choices}。",
            "en": "Setting {path} has the value {value}, which is not one of the choices. Give one of: {choices}.",
        },
        "settings.error.unknown_key": {
            "ja": "設定 {path} は存在しない項目です（値: {value}）。綴りを直すか、この項目を削除してください。",
            "en": "Setting {path} does not exist (value {value}). Correct the spelling or remove it.",
        },
        "settings.error.allowed": {
            "ja": "{parent} に書ける項目: {allowed}。",
            "en": " Settings allowed in {parent}: {allowed}.",
        },
        "settings.error.allowed_top": {
            "ja": "プロファイルの最上位に書ける項目: {allowed}。",
            "en": " Settings allowed at the top level of the profile: {allowed}.",
        },
        "settings.error.suggestion": {"ja": "{suggestion} の誤りではありませんか。", "en": " Did you mean {suggestion}?"},
        "settings.error.invalid_key": {
            "ja": "{parent}項目名 {value} は文字列ではありません。項目名は文字で書いてください（null や数値は項目名にできません）。",
            "en": "{parent}setting name {value} is not text. Write setting names as words; null and numbers cannot name a setting.",
        },
        "settings.error.own": {"ja": "設定 {path}: {reason}", "en": "Setting {path}: {reason}"},
        "settings.error.own_top": {"ja": "{reason}", "en": "{reason}"},
        "settings.error.other": {
            "ja": "設定 {path} の値 {value} は受け付けられません（検証エラーの種類: {kind}）。値を確認して直してください。"
                  "英語の詳細は --lang en で表示されます。",
            "en": "Setting {path} has the value {value}, which is invalid ({kind}: {detail}). Check and correct the value.",
        },
        "settings.error.from_environment": {
            "ja": "この値は環境変数 {variable} で設定されています。",
            "en": " The environment variable {variable} sets this value.",
        },
    }
)

# Pydantic error type to the template of its message; ``ctx`` of the error fills the bounds.
_TEMPLATE_OF_TYPE: dict[str, str] = {
    "missing": "missing",
    "int_parsing": "not_integer",
    "int_type": "not_integer",
    "int_from_float": "not_integer",
    "float_parsing": "not_number",
    "float_type": "not_number",
    "bool_parsing": "not_boolean",
    "bool_type": "not_boolean",
    "string_type": "not_string",
    "dict_type": "not_mapping",
    "model_type": "not_mapping",
    "model_attributes_type": "not_mapping",
    "list_type": "not_list",
    "tuple_type": "not_list",
    "datetime_parsing": "not_datetime",
    "datetime_type": "not_datetime",
    "datetime_from_date_parsing": "not_datetime",
    "greater_than": "greater_than",
    "greater_than_equal": "greater_than_equal",
    "less_than": "less_than",
    "less_than_equal": "less_than_equal",
    "literal_error": "choice",
    "enum": "choice",
}
_BOUNDS = ("gt", "ge", "lt", "le")
_SECRET_NAME = re.compile(r"secret|token|password|credential|webhook", re.IGNORECASE)
_MAX_VALUE_CHARS = 80
# repr() of a YAML alias bomb (nested lists of aliases, 9**10 strings from under 1 kB) takes
# minutes and gigabytes, so containers are written with bounded depth and item counts.
_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel = 3
_BOUNDED_REPR.maxlist = _BOUNDED_REPR.maxtuple = _BOUNDED_REPR.maxdict = _BOUNDED_REPR.maxset = 8
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxother = _MAX_VALUE_CHARS


class SettingsError(OperatorError):
    """Invalid settings, with one text per problem in every language.

    Each text names the setting's dotted path, the value that arrived, what is expected and what
    to do. The ``lm-co2`` command raises it when a profile or an ``LMCO2_*`` override is invalid.

    Parameters
    ----------
    profile
        Name or path of the profile the settings came from.
    issues
        One mapping per problem from language (``ja``, ``en``) to its text.
    """

    def __init__(self, profile: str, issues: Sequence[Mapping[str, str]]) -> None:
        super().__init__("settings.invalid", profile=profile, issues=tuple(dict(issue) for issue in issues))

    def message(self, lang: str = DEFAULT_LANGUAGE) -> str:
        """Return the problems in ``lang``: on one line when there is one, else as a list."""
        issues = cast(tuple[dict[str, str], ...], self.values["issues"])
        texts = [issue.get(lang, issue[DEFAULT_LANGUAGE]) for issue in issues]
        profile = self.values["profile"]
        if len(texts) == 1:
            return message("settings.invalid", lang, profile=profile, detail=texts[0])
        detail = "".join(f"\n  - {text}" for text in texts)
        return message("settings.invalid.many", lang, profile=profile, count=len(texts), detail=detail)

    @classmethod
    def from_validation_error(
        cls, profile: str, error: ValidationError, environ: Mapping[str, str] | None = None
    ) -> SettingsError:
        """Build the error from pydantic's, as :func:`load_settings` raises it.

        ``environ`` is the environment :func:`load_settings` read; a problem whose value came from
        an ``LMCO2_*`` variable names that variable.
        """
        env = {} if environ is None else environ
        return cls(profile, [describe_setting_error(details, env) for details in error.errors()])

    @classmethod
    def from_operator_error(cls, profile: str, error: OperatorError) -> SettingsError:
        """Build the error from one raised while reading the profile, such as a profile that is not a mapping."""
        return cls(profile, [{lang: error.message(lang) for lang in LANGUAGES}])


def describe_setting_error(error: ErrorDetails, environ: Mapping[str, str]) -> dict[str, str]:
    """Return one pydantic error of :class:`Settings` as a text in every language.

    Parameters
    ----------
    error
        One item of ``ValidationError.errors()``.
    environ
        Environment the settings were loaded with; a value set by an ``LMCO2_*`` variable is
        attributed to it.
    """
    return {lang: _describe_in(error, lang, environ) for lang in LANGUAGES}


def _describe_in(error: ErrorDetails, lang: str, environ: Mapping[str, str]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    context = error.get("ctx") or {}
    path = _dotted(loc)
    value = _shown_value(loc, error.get("input"))
    own = context.get("error")

    if kind == "value_error" and isinstance(own, OperatorError):
        # A check across sections (notify and credentials) has no single setting to name.
        key = "settings.error.own" if path else "settings.error.own_top"
        text = message(key, lang, path=path, reason=own.message(lang))
    elif kind == "extra_forbidden":
        text = _describe_unknown_key(loc, value, lang)
    elif kind == "invalid_key":
        # Pydantic puts the key itself last in the location, as text when it was YAML's null.
        key = "null" if error.get("input") is None else repr(error.get("input"))
        parent = _dotted(loc[:-1])
        if lang == "ja":
            where = f"{parent} の" if parent else ""
        else:
            where = f"In {parent}, the " if parent else "The "
        text = message("settings.error.invalid_key", lang, parent=where, value=key)
    elif kind in _TEMPLATE_OF_TYPE:
        bounds = {name: context[name] for name in _BOUNDS if name in context}
        choices = _choices(str(context.get("expected", "")))
        text = message(f"settings.error.{_TEMPLATE_OF_TYPE[kind]}", lang, path=path, value=value, choices=choices, **bounds)
    else:
        text = message("settings.error.other", lang, path=path, value=value, kind=kind, detail=error["msg"])

    variable = _environment_variable(loc, environ)
    if variable is not None:
        # Texts of validators end without a full stop, so one ends the sentence before the note.
        if not text.endswith((".", "。")):
            text += "。" if lang == "ja" else "."
        text += message("settings.error.from_environment", lang, variable=variable)
    return text


def _describe_unknown_key(loc: tuple[int | str, ...], value: str, lang: str) -> str:
    text = message("settings.error.unknown_key", lang, path=_dotted(loc), value=value)
    section = _model_at(loc[:-1])
    if section is None:
        return text
    allowed = list(section.model_fields)
    if len(loc) == 1:
        text += message("settings.error.allowed_top", lang, allowed=", ".join(allowed))
    else:
        text += message("settings.error.allowed", lang, parent=_dotted(loc[:-1]), allowed=", ".join(allowed))
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        text += message("settings.error.suggestion", lang, suggestion=_dotted((*loc[:-1], close[0])))
    return text


def _dotted(loc: tuple[int | str, ...]) -> str:
    """Write an error location as the dotted path of the setting, with list positions in brackets.

    An integer inside a settings section is a key written as a number (``cluster.7``), and a key
    written as YAML's ``null`` reads ``null``.
    """
    text = ""
    for depth, part in enumerate(loc):
        if isinstance(part, int) and _model_at(loc[:depth]) is None:
            text += f"[{part}]"
        else:
            name = "null" if part is None else str(part)
            text = f"{text}.{name}" if text else name
    return text


def _shown_value(loc: tuple[int | str, ...], value: object) -> str:
    """Return the value as the operator wrote it, masked for secrets and shortened."""
    if _is_secret(loc):
        return "'***'"
    # Passwords inside URLs are masked before the text is shortened, which could cut the URL.
    # Only containers go through the bounded repr, which would also cut a long string in its middle.
    written = _BOUNDED_REPR.repr(value) if isinstance(value, (list, tuple, dict, set, frozenset)) else repr(value)
    text = "null" if value is None else mask_url_credentials(written)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    if any(isinstance(part, str) and _SECRET_NAME.search(part) for part in loc):
        return True
    for depth, part in enumerate(loc):
        section = _model_at(loc[:depth])
        field = section.model_fields.get(str(part)) if section is not None else None
        if field is not None and SecretStr in (field.annotation, *typing.get_args(field.annotation)):
            return True
    return False


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Return the settings section at ``loc``, or None when ``loc`` does not lead to a section."""
    section: type[BaseModel] | None = Settings
    for part in loc:
        if section is None or not isinstance(part, str) or part not in section.model_fields:
            return None
        section = _section_of(section.model_fields[part].annotation)
    return section


def _section_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _choices(expected: str) -> str:
    """Turn pydantic's ``'a', 'b' or 'c'`` into ``'a', 'b', 'c'``, which reads in either language."""
    head, separator, last = expected.rpartition(" or ")
    return f"{head}, {last}" if separator else expected


def _environment_variable(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str | None:
    """Return the ``LMCO2_*`` variables that set the value at ``loc``, joined by commas, or None.

    A variable counts when it sets ``loc`` itself, a section containing it, or, for an error of a
    whole section, a setting inside that section.
    """
    # _env_overrides lowercases the names, so a variable may be written in any case.
    variables = {name.upper(): name for name in environ if name.upper().startswith(ENV_PREFIX) and name.upper() != f"{ENV_PREFIX}PROFILE"}
    names = [str(part) for part in itertools.takewhile(lambda part: isinstance(part, str), loc)]
    if not names:
        return None
    for depth in range(len(names), 0, -1):
        variable = ENV_PREFIX + "__".join(names[:depth]).upper()
        if variable in variables:
            return variables[variable]
    inside = ENV_PREFIX + "__".join(names).upper() + "__"
    nested = sorted(name for upper, name in variables.items() if upper.startswith(inside))
    return ", ".join(nested) if nested else None


# PyYAML describes a syntax error in English only, with a fixed set of texts. The known ones get
# a Japanese explanation; the parser's own text is kept, quoted, after it.
_YAML_PROBLEMS_JA: tuple[tuple[str, str], ...] = (
    ("mapping values are not allowed here",
     "ここには「キー: 値」を書けません。1 行に「:」が 2 つあるか、直前の行の字下げがずれています（「:」を含む値は引用符で囲みます）"),
    ("found character '\\t' that cannot start any token", "タブ文字は使えません。字下げには空白を使ってください"),
    ("found a tab character", "タブ文字は使えません。字下げには空白を使ってください"),
    ("found undefined alias", "定義されていないアンカーを参照しています（*名前 の前に &名前 が必要です）"),
    ("expected <block end>", "字下げがそろっていません。同じ階層の項目は同じ字下げにしてください"),
    ("could not find expected ':'", "「:」が見つかりません。「キー: 値」の形で書いてください"),
    ("did not find expected key", "キーがあるべき位置にありません。字下げを確認してください"),
    ("found unexpected end of stream", "ファイルが途中で終わっています。閉じていない引用符がないか確認してください"),
    ("expected ',' or ']'", "[ ] のリストが閉じていないか、要素の区切りの「,」がありません"),
    ("expected ',' or '}'", "{ } のマッピングが閉じていないか、要素の区切りの「,」がありません"),
    ("found duplicate key", "同じキーが同じ階層に 2 回書かれています。どちらか一方を削除してください"),
    ("found unknown escape character", "二重引用符の中に使えないエスケープ（\\ の後の文字）があります。単一引用符で囲むか、\\ を \\\\ にしてください"),
)
_YAML_CONTEXTS_JA: dict[str, str] = {
    "while scanning for the next token": "次の要素を読んでいる途中",
    "while parsing a block mapping": "マッピング（「キー: 値」の並び）を読んでいる途中",
    "while parsing a block collection": "リスト（「- 」の並び）を読んでいる途中",
    "while scanning a quoted scalar": "引用符で囲んだ値を読んでいる途中",
    "while scanning a double-quoted scalar": "二重引用符で囲んだ値を読んでいる途中",
    "while scanning a simple key": "キーを読んでいる途中",
    "while parsing a flow sequence": "[ ] のリストを読んでいる途中",
    "while parsing a flow mapping": "{ } のマッピングを読んでいる途中",
    "while constructing a mapping": "マッピング（「キー: 値」の並び）を組み立てている途中",
}


def describe_yaml_problem(problem: str, lang: str) -> str:
    """Return PyYAML's description of a syntax error for an operator reading ``lang``.

    English keeps the parser's text. Japanese explains the known problems and quotes the parser's
    text after the explanation; an unknown problem is quoted as the parser's own words.
    """
    if lang != "ja":
        return problem
    for start, explanation in _YAML_PROBLEMS_JA:
        if problem.startswith(start):
            return f"{explanation}（YAML パーサー: {problem!r}）"
    return f"YAML パーサーの説明: {problem!r}"


def describe_yaml_context(context: str, lang: str) -> str:
    """Return what the YAML parser was reading when it failed, in ``lang``; see :func:`describe_yaml_problem`."""
    if lang != "ja":
        return context
    return _YAML_CONTEXTS_JA.get(context, f"YAML パーサー: {context!r}")
