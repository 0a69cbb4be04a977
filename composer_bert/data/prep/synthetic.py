"""A seeded generator of structured English-like documents, for tests and the offline demo.

Why this shape: a tiny BERT must visibly learn from it within ~100 steps, so the text is regular
(templated sentences with subject-verb and number agreement, small arithmetic facts) and each
document repeats facts about a few invented people (name, town, job, age, belongings), so many
masked tokens can be recovered from context. About 2500 invented names and towns plus numbers give
enough distinct words for a WordPiece vocabulary of 4096 to fill up, while keeping the tokens per
character ratio (~0.23 at that size) under the converter's default 0.25 cutoff.

The word pools are fixed (built from a constant seed); `seed` only changes the documents. Documents
come from one random stream in order, so `synthetic_documents(n, seed)` is a prefix of
`synthetic_documents(m, seed)` for n < m.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_SYNTHETIC_DOCUMENTS = 20_000

_ONSETS = ("b c d f g h j k l m n p r s t v w z br cl dr fl fr gl gr kr pl pr sc sk sl sn st sw tr th sh ch wh").split()
_VOWELS = ("a e i o u y ai ea ee io ou oa").split()
_CODAS = ("n r l s m x d t k nd rk sh th ll rn st nt ck").split()
_TOWN_SUFFIXES = ("ford ton bury field wick dale mouth port stead haven moor bridge").split()


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """'a/b c/d' -> (('a', 'b'), ('c', 'd'))."""
    return tuple((singular, plural) for singular, plural in (pair.split("/") for pair in text.split()))


_PROFESSIONS = (
    "baker farmer teacher doctor sailor painter miner weaver tailor potter smith carpenter nurse pilot "
    "driver singer writer lawyer judge gardener fisher hunter builder cook clerk merchant banker "
    "soldier dancer poet"
).split()
_COLORS = "red blue green yellow black white brown grey orange purple silver golden".split()
_ADJECTIVES = (
    "old young small large quiet loud happy sad clever lazy brave shy strong weak tall short kind angry calm busy"
).split()
# (singular, plural) pairs, so sentences can agree in number.
_THINGS = _pairs(
    "boat/boats box/boxes book/books chair/chairs lamp/lamps horse/horses goat/goats cup/cups "
    "hat/hats knife/knives wheel/wheels bell/bells coat/coats kite/kites drum/drums map/maps "
    "key/keys clock/clocks basket/baskets ring/rings"
)
_ANIMALS = _pairs(
    "dog/dogs cat/cats bird/birds fox/foxes mouse/mice sheep/sheep wolf/wolves child/children "
    "man/men woman/women goose/geese rabbit/rabbits horse/horses duck/ducks bear/bears"
)
_COUNTED_ANIMALS = tuple(pair for pair in _ANIMALS if pair[0] != pair[1])
# (third person singular, plural) verb forms taking an object.
_VERBS = _pairs(
    "sees/see likes/like carries/carry watches/watch follows/follow finds/find wants/want "
    "chases/chase holds/hold pushes/push fears/fear loves/love"
)
_NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()


@dataclass
class _Person:
    """Facts about one invented person, repeated through a document."""

    first: str
    last: str
    town: str
    job: str
    age: int
    count: int
    color: str
    thing: tuple[str, str]
    pet: tuple[str, str]
    day: str


@lru_cache(maxsize=1)
def _word_pools() -> tuple[list[str], list[str], list[str]]:
    """(first names, surnames, towns): fixed pools of invented capitalized words."""
    rng = random.Random(1234)

    def syllable() -> str:
        return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)

    def unique(make, size: int) -> list[str]:
        words: dict[str, None] = {}
        while len(words) < size:
            words[make().capitalize()] = None
        return list(words)

    firsts = unique(lambda: syllable() + rng.choice(_VOWELS), 1000)
    lasts = unique(lambda: syllable() + syllable(), 1000)
    towns = unique(lambda: syllable() + rng.choice(_TOWN_SUFFIXES), 500)
    return firsts, lasts, towns


def _things_phrase(count: int, color: str, thing: tuple[str, str]) -> str:
    if count == 1:
        return f"one {color} {thing[0]}"
    return f"{count} {color} {thing[1]}"


class _DocumentWriter:
    """Holds the random stream and word pools; `document()` returns the next document."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.random = self.rng.random  # bound once: indexing by random() is ~2x faster than choice()
        self.firsts, self.lasts, self.towns = _word_pools()

    def pick(self, items):
        return items[int(self.random() * len(items))]

    def between(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        return low + int(self.random() * (high - low + 1))

    def person(self) -> _Person:
        return _Person(
            first=self.pick(self.firsts),
            last=self.pick(self.lasts),
            town=self.pick(self.towns),
            job=self.pick(_PROFESSIONS),
            age=self.between(18, 90),
            count=self.between(1, 12),
            color=self.pick(_COLORS),
            thing=self.pick(_THINGS),
            pet=self.pick(_ANIMALS),
            day=self.pick(_WEEKDAYS),
        )

    def introduction(self, p: _Person) -> list[str]:
        return [
            f"{p.first} {p.last} is a {p.job} from {p.town}.",
            f"{p.first} is {p.age} years old and has {_things_phrase(p.count, p.color, p.thing)}.",
        ]

    def fact(self, p: _Person, other: _Person) -> str:
        """One sentence restating a fact about `p`, in one of several templates."""
        pick = int(self.random() * 12)
        if pick == 0:
            return f"The {p.job} from {p.town} is called {p.first} {p.last}."
        if pick == 1:
            return f"Every {p.day}, {p.first} walks to the market in {p.town}."
        if pick == 2:
            verb = "is" if p.count == 1 else "are"
            return f"There {verb} {_things_phrase(p.count, p.color, p.thing)} in the house of {p.first}."
        if pick == 3:
            return f"How old is {p.first}? {p.first} is {p.age} years old."
        if pick == 4:
            return f"Who is the {p.job}? The {p.job} is {p.first}."
        if pick == 5:
            gift = self.between(1, 9)
            total = p.count + gift
            return f"{other.first} gives {p.first} {gift} more, so {p.first} now has {total} {p.thing[1]}."
        if pick == 6:
            word = _NUMBER_WORDS[p.count] if p.count < len(_NUMBER_WORDS) else str(p.count)
            noun = p.thing[0] if p.count == 1 else p.thing[1]
            return f"{p.first} counts {word} {noun} and all of them are {p.color}."
        if pick == 7:
            return f"{p.first} lives in {p.town}, and {other.first} lives in {other.town}."
        if pick == 8:
            return f"The {p.pet[0]} of {p.first} {self.pick(_VERBS)[0]} the {p.color} {p.thing[0]}."
        if pick == 9:
            older, younger = (p, other) if p.age >= other.age else (other, p)
            return f"{older.first} is older than {younger.first}."
        if pick == 10:
            year = 2024 - p.age
            return f"{p.first} {p.last} was born in {year} in {p.town}."
        return f"{p.first} works as a {p.job} and {other.first} works as a {other.job}."

    def generic(self) -> str:
        """A sentence with subject-verb agreement or an arithmetic fact, unrelated to the people."""
        pick = int(self.random() * 4)
        if pick == 0:
            animal, verb, thing = self.pick(_ANIMALS), self.pick(_VERBS), self.pick(_THINGS)
            return f"The {self.pick(_ADJECTIVES)} {animal[0]} {verb[0]} the {thing[0]}."
        if pick == 1:
            animal, verb, thing = self.pick(_ANIMALS), self.pick(_VERBS), self.pick(_THINGS)
            return f"The {self.pick(_ADJECTIVES)} {animal[1]} {verb[1]} the {thing[1]}."
        if pick == 2:
            a, b = self.between(1, 50), self.between(1, 50)
            return f"{a} plus {b} is {a + b}."
        n = self.between(2, 9)
        animal = self.pick(_ANIMALS)
        return f"There are {_NUMBER_WORDS[n]} {animal[1]}, not one {animal[0]}."

    def document(self) -> str:
        return " ".join(self.people_and_sentences()[1])

    def people_and_sentences(self, most_facts: int = 10) -> tuple[list[_Person], list[str]]:
        """A document's people and its sentences: their introductions, then facts and generic sentences."""
        rng = self.rng
        people = [self.person() for _ in range(self.between(2, 3))]
        sentences: list[str] = []
        for p in people:
            sentences.extend(self.introduction(p))
        for _ in range(self.between(min(4, most_facts), most_facts)):
            if self.random() < 0.25:
                sentences.append(self.generic())
            else:
                p, other = rng.sample(people, 2)
                sentences.append(self.fact(p, other))
        return people, sentences

    def question(self) -> tuple[str, str, str]:
        """(context, right ending, wrong ending): one two-choice question about this corpus's text, in one of
        three kinds. Recall: a new document, then one of its introductions restarted ('Ann Pell is a') or its
        age question asked; the wrong ending is another person's of the document (or another value), so
        only reading the document tells the two apart. Agreement: a generic sentence, the verb in the right and
        the wrong number."""
        kind = int(self.random() * 3)
        if kind == 2:  # not 'sheep', whose singular and plural read alike
            animal, verb, thing = self.pick(_COUNTED_ANIMALS), self.pick(_VERBS), self.pick(_THINGS)
            plural = self.random() < 0.5
            subject = f"The {self.pick(_ADJECTIVES)} {animal[plural]}"
            return subject, f"{verb[plural]} the {thing[plural]}.", f"{verb[not plural]} the {thing[plural]}."
        people, sentences = self.people_and_sentences(most_facts=2)  # short: the question fits a small context
        p = people[0]
        others = [o for o in people[1:] if (o.job if kind == 0 else o.age) != (p.job if kind == 0 else p.age)]
        if kind == 0:
            wrong = others[0].job if others else self.pick([job for job in _PROFESSIONS if job != p.job])
            stem, right, wrong = f"{p.first} {p.last} is a", f"{p.job} from {p.town}.", f"{wrong} from {p.town}."
        else:
            wrong_age = others[0].age if others else p.age + self.between(1, 9)
            stem, right, wrong = f"How old is {p.first}? {p.first} is", f"{p.age} years old.", f"{wrong_age} years old."
        return f"{' '.join(sentences)} {stem}", right, wrong


def synthetic_documents(num_documents: int = DEFAULT_SYNTHETIC_DOCUMENTS, seed: int = 0) -> Iterator[str]:
    """Yield `num_documents` deterministic documents for `seed` (a few hundred characters each)."""
    writer = _DocumentWriter(seed)
    for _ in range(num_documents):
        yield writer.document()


def synthetic_questions(num_questions: int, seed: int) -> Iterator[dict[str, object]]:
    """`num_questions` two-choice questions about text like `synthetic_documents`' (`_DocumentWriter.question`), as
    COPA rows (premise, choice1, choice2, label: which choice is right, question, idx): the layout the zero-shot
    recipe reads, with the prompt `{premise} {answer}`. Their documents are new (another random stream) and the
    right choice is first or second at random."""
    writer = _DocumentWriter(seed)
    for idx in range(num_questions):
        context, right, wrong = writer.question()
        label = int(writer.random() < 0.5)
        choices = (wrong, right) if label else (right, wrong)
        yield {"premise": context, "choice1": choices[0], "choice2": choices[1], "question": "effect", "label": label, "idx": idx}
