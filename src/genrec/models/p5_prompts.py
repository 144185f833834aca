r"""P5's prompts: recommendation tasks as text (Geng et al., RecSys 2022).

Every task is a family of templates, each a line of words with slots: ``{user}`` (the user's
number, as digits; "someone" for a folded-in history, which has no number), ``{history}``
(the history's items, oldest first, separated by commas), ``{candidates}`` (a list of items
to choose from) and ``{item}`` (one item). An item is written as its token tuple under the
model's :class:`~genrec.models.item_index.ItemIndex`. The last template of each family is
held out of training, as P5 holds out prompts to test how it reads a prompt it never saw;
evaluation uses it by default.

The words are this module's own (P5's wording is not copied); the families are P5's
sequential (task 2), direct (task 5: choose from 1 positive and 99 sampled candidates) and
rating (task 1: the answer a star rating as text).

:class:`Vocabulary` maps the tokens to ids: padding (0), unknown, the decoder's start, the
templates' words, the ten digits (user numbers, item numbers, ratings), then the item code
tokens of an indexing whose positions have tokens of their own (position ``t``, code ``c``).
Its word list is saved with a model (as UTF-8 bytes), so a loaded model reads its prompts
with the vocabulary it was trained with.

A rendered prompt is its tokens, their roles and their recency. The t-th token of an item's
tuple has role t + 1, every other token 0: the model embeds the roles (P5's whole-word
embeddings do the same work: they tell which tokens spell one item), so that a digit reads
differently as an item number's first or last digit. The tokens of the history's j-th item
from its end have recency j (1 the most recent), every other token 0: the model embeds it
as TIGER embeds its window positions, so that the most recent items are found wherever the
template puts the history.

Positions count the tokens one by one, except in a candidate list (and an ``{item}``): all
its tokens take one position, the slot's. A candidate list is read as a set of items (the
roles tell its tuples apart), so the words after it keep their positions however long it
is, and a 100-item list reads positions that a 20-item one trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.errors import ConfigError, DataError
from genrec.models.item_index import ItemIndex

__all__ = [
    "Template",
    "TEMPLATES",
    "FAMILIES",
    "Vocabulary",
    "PromptRenderer",
    "template",
    "training_templates",
]

PAD, UNK, BOS = 0, 1, 2
SPECIAL = ("<pad>", "<unk>", "<bos>")
DIGITS = tuple(str(d) for d in range(10))
SEPARATOR = ","  # between the items of a list
NO_USER = "someone"  # the {user} of a folded-in history


@dataclass(frozen=True)
class Template:
    """One prompt: ``id`` ("sequential-1"), its family, its words and slots, and whether it
    is held out of training."""

    id: str
    family: str
    text: str
    held_out: bool = False

    def words(self) -> list[str]:
        return self.text.split()


def _family(name: str, lines: list[str]) -> list[Template]:
    n = len(lines)
    return [Template(f"{name}-{j + 1}", name, t, held_out=j == n - 1) for j, t in enumerate(lines)]


#: the prompt families; the last template of each is held out of training
TEMPLATES: dict[str, list[Template]] = {
    "sequential": _family(
        "sequential",
        [
            "user {user} has bought {history} : what comes next ?",
            "here is what user {user} bought , in order : {history} . which item is next ?",
            "after {history} , what will user {user} buy ?",
            "the purchase history of user {user} reads {history} . predict the next purchase",
            "user {user} : {history} . next item ?",
            "items bought so far by user {user} : {history} . recommend the one to buy next",
        ],
    ),
    "direct": _family(
        "direct",
        [
            "which of these should user {user} get ? {candidates}",
            "choose the best item for user {user} among {candidates}",
            "user {user} will like one of {candidates} . which one ?",
            "pick an item for user {user} from {candidates}",
        ],
    ),
    "rating": _family(
        "rating",
        [
            "what star rating would user {user} give {item} ?",
            "how many stars will user {user} give to {item} ?",
            "user {user} and item {item} : the rating from 1 to 5 ?",
            "user {user} rated {item} with how many stars ?",
        ],
    ),
}
FAMILIES: tuple[str, ...] = tuple(TEMPLATES)
SLOTS = ("{user}", "{history}", "{candidates}", "{item}")


def template(tid: str) -> Template:
    """The template named ``tid`` ("sequential-6"); a ConfigError lists the names."""
    for fam in TEMPLATES.values():
        for t in fam:
            if t.id == tid:
                return t
    names = ", ".join(t.id for fam in TEMPLATES.values() for t in fam)
    raise ConfigError(f"unknown prompt template {tid!r}; the templates are {names}")


def training_templates(family: str) -> list[Template]:
    """The family's templates that training reads (all but the held-out one)."""
    return [t for t in TEMPLATES[family] if not t.held_out]


def template_words() -> list[str]:
    """Every word of every template (slots left out), sorted."""
    words = {w for fam in TEMPLATES.values() for t in fam for w in t.words() if w not in SLOTS}
    words |= {SEPARATOR, NO_USER}
    return sorted(words - set(DIGITS))


class Vocabulary:
    """Token ids: the special tokens, words, digits, then item code tokens (the module
    docstring). ``levels``: the codes each item position takes when positions have tokens
    of their own (empty for digit indexings)."""

    def __init__(self, words: list[str], levels: list[int]):
        self.words = list(words)
        self.levels = list(levels)
        self.index = {w: j for j, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise DataError("the vocabulary repeats a word")
        self.digit0 = self.index["0"]
        starts = np.cumsum([0, *self.levels])
        self.level_start = [len(self.words) + int(s) for s in starts[:-1]]  # per position
        self.size = len(self.words) + int(starts[-1])

    @classmethod
    def build(cls, index: ItemIndex) -> Vocabulary:
        words = [*SPECIAL, *template_words(), *DIGITS]
        return cls(words, [] if index.digits else index.level_sizes)

    def to_bytes(self) -> np.ndarray:
        """The word list and the levels as UTF-8 bytes (uint8), saved with a model."""
        text = "\n".join(self.words) + "\n\t" + " ".join(map(str, self.levels))
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> Vocabulary:
        text = bytes(np.asarray(data, dtype=np.uint8)).decode("utf-8")
        words, _, levels = text.partition("\n\t")
        return cls(words.split("\n"), [int(x) for x in levels.split()])

    def word(self, w: str) -> int:
        j = self.index.get(w)
        if j is None:
            raise DataError(
                f"the prompt word {w!r} is not in this model's vocabulary; the model was "
                f"trained with other prompts: use the genrec version it was trained with"
            )
        return j

    def number(self, n: int) -> list[int]:
        """The digit tokens of a non-negative integer."""
        return [self.digit0 + int(d) for d in str(int(n))]

    def item_tokens(self, index: ItemIndex) -> np.ndarray:
        """(I, T) every item's token ids."""
        if index.digits:
            return index.codes + self.digit0
        return index.codes + np.asarray(self.level_start, dtype=np.int64)[None, :]

    def answer_columns(self, index: ItemIndex) -> np.ndarray:
        """(T, V) the token id of code ``c`` at position ``t`` (V the largest code plus one,
        the trie's width; columns past a level's size repeat its last code, which no trie
        allows there)."""
        V = int(index.codes.max()) + 1  # the trie's width
        out = np.zeros((index.n_tokens, V), dtype=np.int64)
        for t, size in enumerate(index.level_sizes):
            base = self.digit0 if index.digits else self.level_start[t]
            out[t] = base + np.minimum(np.arange(V), size - 1)
        return out


class PromptRenderer:
    """Renders prompts to token ids: each template pre-split into word ids and slots."""

    def __init__(self, vocab: Vocabulary, item_tokens: np.ndarray):
        self.vocab = vocab
        self.item_tokens = np.asarray(item_tokens, dtype=np.int64)  # (I, T)
        self.sep = vocab.word(SEPARATOR)
        self.no_user = [vocab.word(NO_USER)]
        self.parts: dict[str, list[str | np.ndarray]] = {}
        for fam in TEMPLATES.values():
            for t in fam:
                parts: list[str | np.ndarray] = []
                run: list[int] = []
                for w in t.words():
                    if w in SLOTS:
                        if run:
                            parts.append(np.asarray(run, dtype=np.int64))
                            run = []
                        parts.append(w)
                    else:
                        run.append(vocab.word(w))
                if run:
                    parts.append(np.asarray(run, dtype=np.int64))
                self.parts[t.id] = parts

    def items(self, items: np.ndarray, history: bool = False) -> np.ndarray:
        """(3, n) the tokens of a list of items, each item's tuple then a comma (none after
        the last), their roles and (``history``) their recency (the module docstring)."""
        items = np.asarray(items, dtype=np.int64)
        n = len(items)
        if n == 0:
            return np.zeros((3, 0), dtype=np.int64)
        T = self.item_tokens.shape[1]
        out = np.zeros((3, n, T + 1), dtype=np.int64)
        out[0] = self.sep
        out[0, :, :T] = self.item_tokens[items]
        out[1] = np.arange(1, T + 2) % (T + 1)  # 1..T, then 0 for the comma
        if history:
            out[2, :, :T] = np.arange(n, 0, -1)[:, None]  # 1 for the most recent
        return out.reshape(3, -1)[:, :-1]

    def _words(self, ids: np.ndarray | list[int]) -> np.ndarray:
        w = np.asarray(ids, dtype=np.int64)
        return np.stack([w, np.zeros_like(w), np.zeros_like(w)])

    def fixed_length(self, tid: str, n_history: int = 0, n_candidates: int = 0) -> int:
        """The prompt's length with a user of one digit and these many items: the words'
        tokens plus the lists' (what truncation budgets against)."""
        T = self.item_tokens.shape[1]
        size = 0
        for p in self.parts[tid]:
            if isinstance(p, np.ndarray):
                size += len(p)
            elif p == "{user}":
                size += 1
            elif p == "{item}":
                size += T
            elif p == "{history}":
                size += max(n_history * (T + 1) - 1, 0)
            else:
                size += max(n_candidates * (T + 1) - 1, 0)
        return size

    def render(
        self,
        tid: str,
        user: int | None,
        history: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
        item: int | None = None,
    ) -> np.ndarray:
        """(4, S): the token ids of template ``tid`` with its slots filled (``user`` None: a
        folded-in history, written "someone"), each token's role (t + 1 for the t-th token
        of an item's tuple, 0 for every other token), recency (j for the tokens of the
        history's j-th item from its end, 0 for every other token) and position (the
        module docstring: a list of items takes one position)."""
        u = self.no_user if user is None else self.vocab.number(user)
        out: list[np.ndarray] = []
        w = 0  # the next position
        for p in self.parts[tid]:
            if isinstance(p, np.ndarray) or p in ("{user}", "{history}"):
                if isinstance(p, np.ndarray):
                    part = self._words(p)
                elif p == "{user}":
                    part = self._words(u)
                else:
                    part = self.items(np.zeros(0) if history is None else history, True)
                pos = w + np.arange(part.shape[1])
                w += part.shape[1]
            else:
                if p == "{candidates}":
                    part = self.items(np.zeros(0) if candidates is None else candidates)
                else:
                    assert item is not None, f"template {tid} needs an item"
                    part = self.items(np.asarray([item]))
                pos = np.full(part.shape[1], w)
                w += 1
            out.append(np.concatenate([part, pos[None].astype(np.int64)]))
        return np.concatenate(out, axis=1)
