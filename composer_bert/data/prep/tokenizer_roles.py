"""Which tokens of a tokenizer folder play the special roles rows need ([CLS], [SEP], [MASK], [PAD] and kin), read
from the folder itself so that any Hugging Face tokenizer folder builds shards, whatever its tokens and ids.

Roles come from the folder's `tokenizer_config.json` and `special_tokens_map.json` (keys `cls_token`,
`sep_token`, `mask_token`, `pad_token`, `unk_token`, `bos_token`, `eos_token`; each a string or an AddedToken
object with a "content" key; special_tokens_map.json wins where both name a role, as in transformers). A folder
whose files name no role (a bare `tokenizer.json`, as the tests save theirs) falls back to this package's
literal tokens, `contract.SPECIAL_TOKENS`. A role's id is its token's id in `tokenizer.json`; a role named whose
token is not in the vocabulary is refused. Only JSON is read here: no `transformers` import at prep time.

What rows need, by objective: a masked LM's rows start with a leader (cls, else bos), end each document with a
separator (sep, else eos), and are masked with `mask`; `pad` is required too (finetuning pads). A causal LM's
rows end each document with the end-of-text token (`contract.END_OF_TEXT_ROLES`: eos, else sep, the same token
generation stops at); nothing else is required. `unk` is never required (byte-level BPE has none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer_bert.data.contract import END_OF_TEXT_ROLES, SPECIAL_TOKENS
from composer_bert.errors import UserError
from composer_bert.objectives import OBJECTIVES, objective

ROLES = ("cls", "sep", "mask", "pad", "unk", "bos", "eos")
ROLE_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # in order: a later file wins
LEADER_ROLES = ("cls", "bos")  # the first token of a [CLS]-led row
SEPARATOR_ROLES = ("sep", "eos")  # the token after each document of a [CLS]-led row


def named_roles(path: Path) -> tuple[dict[str, str], str]:
    """Role -> token the folder's files name, and where they were read (for messages); a role set to null is unnamed."""
    named: dict[str, str] = {}
    read = []
    for name in ROLE_FILES:
        file = path / name
        if not file.is_file():
            continue
        read.append(name)
        config = _json_object(file)
        for role in ROLES:
            value = config.get(f"{role}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise UserError(
                    f"'{file}' has a {role}_token that is neither a token string nor an object with a \"content\" "
                    "string; fix the file or save the tokenizer again with save_pretrained"
                )
            named[role] = value
    return named, " / ".join(read)


def _json_object(file: Path) -> dict[str, Any]:
    try:
        config = json.loads(file.read_bytes())
    except OSError as err:
        raise UserError(f"cannot read '{file}' ({err.strerror}); check the file's permissions") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"'{file}' is not valid JSON; fix it or save the tokenizer again with save_pretrained") from None
    if not isinstance(config, dict):
        raise UserError(f"'{file}' holds a JSON {type(config).__name__}, not an object; fix it or save the tokenizer again")
    return config


def special_ids(path: Path, token_to_id: Any) -> dict[str, int]:
    """Role -> token id of every role the folder has: named by its files, else this package's literal tokens."""
    named, files = named_roles(path)
    if not named:  # no role named anywhere: our own tokens, where the vocabulary has them
        found = {role: token_to_id(token) for role, token in SPECIAL_TOKENS.items()}
        return {role: token_id for role, token_id in found.items() if token_id is not None}
    ids = {}
    for role, token in named.items():
        token_id = token_to_id(token)
        if token_id is None:
            raise UserError(
                f"{files} of tokenizer '{path}' names {role}_token {token!r}, which is not in its tokenizer.json "
                "vocabulary; fix the file or save the tokenizer again with save_pretrained"
            )
        ids[role] = token_id
    return ids


def first_role(ids: dict[str, int], roles: tuple[str, ...]) -> int | None:
    """The id of the first of `roles` that `ids` has."""
    return next((ids[role] for role in roles if role in ids), None)


def missing_roles(ids: dict[str, int], objective_name: str) -> list[str]:
    """What `objective_name`'s rows need that `ids` lacks, in words ([] when nothing)."""
    entry = objective(objective_name)
    needs = {}
    if entry.rows_start_with_cls:
        needs["[CLS]-like token (cls_token, or bos_token) to start each row"] = LEADER_ROLES
    if entry.ends_documents_with_eos:
        needs["end-of-text token (eos_token, or sep_token) to end each document"] = END_OF_TEXT_ROLES
    else:
        needs["separator token (sep_token, or eos_token) to end each document"] = SEPARATOR_ROLES
    if not entry.causal_attention:  # a bidirectional objective learns by masking; finetuning it pads
        needs["mask token (mask_token)"] = ("mask",)
        needs["padding token (pad_token)"] = ("pad",)
    return [what for what, roles in needs.items() if first_role(ids, roles) is None]


def check_roles(path: Path, ids: dict[str, int], objective_name: str) -> None:
    """Refuse, in one line, a tokenizer lacking a role that `objective_name`'s rows need."""
    missing = missing_roles(ids, objective_name)
    if missing:
        others = [f"--objective {name}" for name in OBJECTIVES if name != objective_name and not missing_roles(ids, name)]
        instead = f", or pass {' or '.join(others)}" if others else ""
        lacks = " and no ".join([", no ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        it = "it" if len(missing) == 1 else "them"
        raise UserError(
            f"tokenizer '{path}' has no {lacks}, which --objective {objective_name} needs; add {it} to the tokenizer "
            f"and name {it} in its tokenizer_config.json{instead}"
        )


def row_ids(ids: dict[str, int], objective_name: str) -> tuple[int | None, int]:
    """(the id each row starts with, None for rows without one; the id after each document), once `check_roles` passed."""
    entry = objective(objective_name)
    row_start = first_role(ids, LEADER_ROLES) if entry.rows_start_with_cls else None
    return row_start, first_role(ids, END_OF_TEXT_ROLES if entry.ends_documents_with_eos else SEPARATOR_ROLES)
