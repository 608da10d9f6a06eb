"""Read a PDDL domain and problem (the STRIPS subset) into plain data, checking names, types and arities.

Every error is one line, ``FILE:LINE:COL: message``, at the item that is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from goalrt.planner.pddl.sexpr import Atom, Item, List, Source

ROOT_TYPE: Final = "object"
_NAME: Final = re.compile(r"[a-z][a-z0-9_-]*")
_SUPPORTED: Final = frozenset({":strips", ":typing", ":negative-preconditions", ":equality"})
# Forms of the full language, named in the error when a file uses one.
_UNSUPPORTED_FORMS: Final = {
    "or": "disjunctive conditions (or)",
    "imply": "implications (imply)",
    "forall": "universal quantifiers (forall)",
    "exists": "existential quantifiers (exists)",
    "when": "conditional effects (when)",
    "increase": "numeric fluents (increase)",
    "decrease": "numeric fluents (decrease)",
    "assign": "numeric fluents (assign)",
    "scale-up": "numeric fluents (scale-up)",
    "scale-down": "numeric fluents (scale-down)",
    "either": "either types",
    "<": "numeric comparisons",
    ">": "numeric comparisons",
    "<=": "numeric comparisons",
    ">=": "numeric comparisons",
}
_UNSUPPORTED_SECTIONS: Final = {
    ":functions": "numeric fluents (:functions)",
    ":durative-action": "durative actions (:durative-action)",
    ":derived": "derived predicates (:derived)",
    ":constraints": "constraints (:constraints)",
    ":metric": "metrics (:metric)",
    ":timed-initial-literals": "timed initial literals",
}
_STRIPS: Final = "goalrt imports the STRIPS subset of PDDL (:strips :typing :negative-preconditions :equality)"


@dataclass(frozen=True, slots=True)
class Literal:
    """An atom ``(pred arg ...)`` (``pred`` is ``=`` for equality), negated or not; an arg is ``?var`` or an object."""

    pred: str
    args: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    params: tuple[tuple[str, str], ...]  # (variable without '?', type)
    pre: tuple[Literal, ...]
    adds: tuple[Literal, ...]
    deletes: tuple[Literal, ...]


@dataclass
class Domain:
    name: str
    types: dict[str, str | None] = field(default_factory=lambda: {ROOT_TYPE: None})  # type -> parent
    constants: dict[str, str] = field(default_factory=dict)  # object -> type
    predicates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> argument types
    actions: list[Action] = field(default_factory=list)


@dataclass
class Task:
    """A domain and a problem of it: what ``translate`` turns into the planner's problem."""

    domain: Domain
    name: str
    objects: dict[str, str] = field(default_factory=dict)  # object -> type, constants included
    init: list[Literal] = field(default_factory=list)
    goal: list[Literal] = field(default_factory=list)


def _atom(src: Source, item: Item | None, what: str, at: Item) -> Atom:
    if not isinstance(item, Atom):
        raise src.error(item or at, f"expected {what}")
    return item


def _name(src: Source, item: Item | None, what: str, at: Item) -> str:
    atom = _atom(src, item, what, at)
    if not _NAME.fullmatch(atom.text):
        raise src.error(atom, f"expected {what}, got {atom.text!r} (a name: a letter, then letters, digits, _ and -)")
    return atom.text


def _head(src: Source, item: Item, what: str) -> str:
    """The first atom of a list (``define``, ``:action``, ``and``, a predicate), lowercased."""
    if not isinstance(item, List) or not item.items:
        raise src.error(item, f"expected {what}")
    head = item.items[0]
    if not isinstance(head, Atom):
        raise src.error(head, f"expected {what}")
    return head.text


def _header(src: Source, kind: str) -> tuple[str, tuple[Item, ...]]:
    """Check ``(define (KIND NAME) ...)``; return NAME and the sections after it."""
    root = src.root
    if _head(src, root, "(define ...)") != "define":
        raise src.error(root.items[0], f"expected 'define', got {root.items[0]}")
    if len(root.items) < 2 or _head(src, root.items[1], f"({kind} NAME)") != kind:
        raise src.error(root.items[1] if len(root.items) > 1 else root, f"expected ({kind} NAME)")
    decl = root.items[1]
    assert isinstance(decl, List)
    return _name(src, decl.items[1] if len(decl.items) > 1 else None, f"the {kind}'s name", decl), root.items[2:]


def _typed_list(
    src: Source, items: tuple[Item, ...], what: str, *, variables: bool, either: Domain | None = None
) -> list[tuple[Atom, str, Atom]]:
    """Read ``a b - t c`` into (atom, name, type atom) triples; untyped names are of type ``object``.

    ``(either t u)`` is refused unless ``either`` is given (a predicate's arguments, whose types are not
    checked): then its types must be declared in that domain and the argument reads as of type ``object``.
    """
    out: list[tuple[Atom, str, Atom]] = []
    pending: list[tuple[Atom, str]] = []
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, Atom) and item.text == "-":
            if i + 1 >= len(items):
                raise src.error(item, "expected a type after '-'")
            kind = items[i + 1]
            if isinstance(kind, List) and kind.items and _head(src, kind, "a type") == "either":
                if either is None:
                    raise src.error(kind, f"unsupported: either types; {_STRIPS}")
                if len(kind.items) < 2:
                    raise src.error(kind, "expected (either TYPE ...)")
                for member in kind.items[1:]:
                    _check_type(src, either, _atom(src, member, "a type", kind))
                type_atom = Atom(ROOT_TYPE, kind.line, kind.column)
            else:
                type_atom = _atom(src, kind, "a type after '-'", item)
                _name(src, type_atom, "a type", item)
            out += [(a, n, type_atom) for a, n in pending]
            pending = []
            i += 2
            continue
        atom = _atom(src, item, what, item)
        text = atom.text
        if variables:
            if not text.startswith("?"):
                raise src.error(atom, f"expected a variable (?name), got {text!r}")
            text = text[1:]
        if not _NAME.fullmatch(text):
            raise src.error(atom, f"expected {what}, got {atom.text!r}")
        pending.append((atom, text))
        i += 1
    root = Atom(ROOT_TYPE, 0, 0)
    return out + [(a, n, root) for a, n in pending]


def _check_type(src: Source, domain: Domain, atom: Atom) -> str:
    if atom.text not in domain.types:
        raise src.error(atom, f"undeclared type {atom.text!r}")
    return atom.text


def _check_section(src: Source, section: Item, allowed: tuple[str, ...]) -> tuple[str, List]:
    key = _head(src, section, "a section such as " + " ".join(allowed))
    assert isinstance(section, List)
    if key in _UNSUPPORTED_SECTIONS:
        raise src.error(section, f"unsupported: {_UNSUPPORTED_SECTIONS[key]}; {_STRIPS}")
    if key not in allowed:
        raise src.error(section.items[0], f"unknown section {key!r}; expected one of {', '.join(allowed)}")
    return key, section


def read_domain(src: Source) -> Domain:
    """Read a domain file (``(define (domain NAME) ...)``)."""
    name, sections = _header(src, "domain")
    domain = Domain(name)
    allowed = (":requirements", ":types", ":constants", ":predicates", ":action")
    for section in sections:
        key, lst = _check_section(src, section, allowed)
        body = lst.items[1:]
        if key == ":requirements":
            for item in body:
                req = _atom(src, item, "a requirement", lst).text
                if req not in _SUPPORTED:
                    raise src.error(item, f"unsupported requirement {req}; {_STRIPS}")
        elif key == ":types":
            for atom, type_name, parent in _typed_list(src, body, "a type name", variables=False):
                if type_name == ROOT_TYPE:
                    continue
                if type_name in domain.types and domain.types[type_name] not in (ROOT_TYPE, parent.text):
                    raise src.error(atom, f"type {type_name} declared twice with different parents")
                domain.types[type_name] = parent.text
            for parent_name in list(domain.types.values()):
                if parent_name is not None and parent_name not in domain.types:
                    domain.types[parent_name] = ROOT_TYPE  # a parent named only as a parent is a type of its own
            _check_cycles(src, domain, lst)
        elif key == ":constants":
            _objects(src, domain, body, domain.constants)
        elif key == ":predicates":
            for item in body:
                pred = _head(src, item, "a predicate (name ?arg ...)")
                assert isinstance(item, List)
                if not _NAME.fullmatch(pred):
                    raise src.error(item.items[0], f"expected a predicate name, got {pred!r}")
                if pred in domain.predicates:
                    raise src.error(item, f"predicate {pred} declared twice")
                args = _typed_list(src, item.items[1:], "a variable", variables=True, either=domain)
                domain.predicates[pred] = tuple(_check_type(src, domain, t) for _, _, t in args)
        else:
            domain.actions.append(_action(src, domain, lst))
    names = [a.name for a in domain.actions]
    for action in domain.actions:
        if names.count(action.name) > 1:
            raise src.error(None, f"action {action.name} declared twice")
    return domain


def _check_cycles(src: Source, domain: Domain, at: Item) -> None:
    for start in domain.types:
        seen = [start]
        parent = domain.types[start]
        while parent is not None:
            if parent in seen:
                raise src.error(at, f"the types form a cycle: {' -> '.join([*seen, parent])}")
            seen.append(parent)
            parent = domain.types.get(parent)


def _objects(src: Source, domain: Domain, items: tuple[Item, ...], into: dict[str, str]) -> None:
    for atom, obj, type_atom in _typed_list(src, items, "an object name", variables=False):
        kind = _check_type(src, domain, type_atom) if type_atom.line else ROOT_TYPE
        if into.get(obj, kind) != kind:
            raise src.error(atom, f"object {obj} declared twice, as {into[obj]} and as {kind}")
        into[obj] = kind


def _action(src: Source, domain: Domain, lst: List) -> Action:
    name = _name(src, lst.items[1] if len(lst.items) > 1 else None, "the action's name", lst)
    fields: dict[str, Item] = {}
    rest = lst.items[2:]
    if len(rest) % 2:
        raise src.error(rest[-1], "expected :parameters, :precondition or :effect followed by its value")
    for key_item, value in zip(rest[::2], rest[1::2], strict=True):
        key = _atom(src, key_item, ":parameters, :precondition or :effect", lst).text
        if key not in (":parameters", ":precondition", ":effect"):
            raise src.error(key_item, f"unknown action field {key!r}; expected :parameters, :precondition or :effect")
        fields[key] = value
    params: list[tuple[str, str]] = []
    if ":parameters" in fields:
        plist = fields[":parameters"]
        if not isinstance(plist, List):
            raise src.error(plist, "expected (?param - type ...)")
        for atom, var, type_atom in _typed_list(src, plist.items, "a parameter", variables=True):
            if any(var == p for p, _ in params):
                raise src.error(atom, f"parameter ?{var} declared twice")
            params.append((var, _check_type(src, domain, type_atom) if type_atom.line else ROOT_TYPE))
    scope = {p for p, _ in params}
    pre = _conjunction(src, domain, fields.get(":precondition"), scope, effect=False)
    effects = _conjunction(src, domain, fields.get(":effect"), scope, effect=True)
    return Action(
        name,
        tuple(params),
        tuple(pre),
        tuple(e for e in effects if not e.negated),
        tuple(e for e in effects if e.negated),
    )


def _conjunction(src: Source, domain: Domain, item: Item | None, scope: set[str], *, effect: bool) -> list[Literal]:
    """Read ``(and L ...)``, one literal, or ``()``; a literal is an atom or ``(not atom)`` (``=`` not in effects)."""
    if item is None:
        return []
    if isinstance(item, List) and not item.items:
        return []
    head = _head(src, item, "a condition (and ...), an atom or (not atom)")
    assert isinstance(item, List)
    parts = item.items[1:] if head == "and" else (item,)
    return [_literal(src, domain, part, scope, effect=effect) for part in parts]


def _literal(src: Source, domain: Domain, item: Item, scope: set[str] | None, *, effect: bool) -> Literal:
    """Read an atom or ``(not atom)``; ``scope`` holds the action's variables (None: objects only)."""
    head = _head(src, item, "an atom (predicate arg ...) or (not atom)")
    assert isinstance(item, List)
    if head == "not":
        if len(item.items) != 2:
            raise src.error(item, "expected (not ATOM)")
        inner = _literal(src, domain, item.items[1], scope, effect=effect)
        if inner.negated:
            raise src.error(item.items[1], "expected an atom inside (not ...)")
        return Literal(inner.pred, inner.args, True)
    if head in _UNSUPPORTED_FORMS:
        raise src.error(item, f"unsupported: {_UNSUPPORTED_FORMS[head]}; {_STRIPS}")
    if head == "and":
        raise src.error(item, "a nested (and ...) is not supported here; expected an atom or (not atom)")
    if head == "=":
        if effect:
            raise src.error(item, "an effect cannot be an equality")
        arity: tuple[str, ...] = (ROOT_TYPE, ROOT_TYPE)
    elif head in domain.predicates:
        arity = domain.predicates[head]
    else:
        raise src.error(item.items[0], f"unknown predicate {head!r}")
    args = item.items[1:]
    if len(args) != len(arity):
        raise src.error(item, f"predicate {head} takes {len(arity)} argument(s), given {len(args)}")
    out = []
    for arg in args:
        atom = _atom(src, arg, "an argument (?variable or object)", item)
        if atom.text.startswith("?"):
            if scope is None:
                raise src.error(atom, f"a variable ({atom.text}) where only objects may stand")
            if atom.text[1:] not in scope:
                raise src.error(atom, f"undeclared variable {atom.text}")
            out.append(atom.text)
        else:
            if scope is not None and atom.text not in domain.constants:
                raise src.error(atom, f"unknown constant {atom.text!r} (not in the domain's :constants)")
            out.append(atom.text)
    return Literal(head, tuple(out))


def read_task(domain: Domain, src: Source) -> Task:
    """Read a problem file of ``domain`` (``(define (problem NAME) (:domain NAME) ...)``)."""
    name, sections = _header(src, "problem")
    task = Task(domain, name, dict(domain.constants))
    allowed = (":domain", ":requirements", ":objects", ":init", ":goal")
    goal_seen = False
    for section in sections:
        key, lst = _check_section(src, section, allowed)
        body = lst.items[1:]
        if key == ":domain":
            named = _name(src, body[0] if body else None, "the domain's name", lst)
            if named != domain.name:
                raise src.error(body[0], f"problem of domain {named!r}, but the domain file is {domain.name!r}")
        elif key == ":requirements":
            for item in body:
                req = _atom(src, item, "a requirement", lst).text
                if req not in _SUPPORTED:
                    raise src.error(item, f"unsupported requirement {req}; {_STRIPS}")
        elif key == ":objects":
            _objects(src, domain, body, task.objects)
        elif key == ":init":
            for item in body:
                if isinstance(item, List) and item.items and _head(src, item, "an atom") in ("=", "not"):
                    raise src.error(item, "expected a ground atom (the initial state lists true facts)")
                task.init.append(_ground(src, task, item))
        else:
            goal_seen = True
            if len(body) != 1:
                raise src.error(lst, "expected one goal condition")
            item = body[0]
            parts = item.items[1:] if _head(src, item, "a goal") == "and" and isinstance(item, List) else (item,)
            for part in parts:
                task.goal.append(_ground(src, task, part))
    if not goal_seen:
        raise src.error(src.root, "the problem has no (:goal ...)")
    return task


def _ground(src: Source, task: Task, item: Item) -> Literal:
    literal = _literal(src, task.domain, item, None, effect=False)
    atoms = item.items[1].items[1:] if literal.negated else item.items[1:]  # type: ignore[union-attr]
    for atom in atoms:
        assert isinstance(atom, Atom)
        if atom.text not in task.objects:
            raise src.error(atom, f"unknown object {atom.text!r}")
    return literal
