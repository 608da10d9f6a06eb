"""Built-in actions in GDL: their contracts (``builtin`` declarations) and the ``with`` blocks that call them.

The contracts are read from gdl/builtin/*.gdl (``goalrt/builtin`` in a wheel)
and from the installed plugins (``goalrt.actions.catalog.contract_sources``).
An action whose ``handler`` names a built-in gives its arguments in ``with``;
this module checks them against the contract (every argument known, every
required one given, each value of its type, templates naming only the
action's parameters) and compiles them to the JSON the worker renders
(``goalrt.actions.binding``): ``{"args": ..., "hosts": [...], "urls": [...]}``,
where ``hosts`` are the hosts the ``url`` arguments write out (they join the
allow-list of ``http.call``). An argument of type ``sql`` is a constant
string taken as written (no holes, braces literal): values reach a statement
only as bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from goalrt.actions.binding import STATE_KEY, TEMPLATE, params_in_path
from goalrt.errors import GdlError
from goalrt.gdl import ast
from goalrt.gdl.diagnostics import Problem, render_all
from goalrt.gdl.parser import parse_or_problem

TYPES: Final = ("any", "boolean", "integer", "list", "number", "object", "sql", "string", "url")
_URL: Final = re.compile(r"https?://(?P<host>[^/?#{}]*)(?:[/?#].*)?", re.DOTALL)
_SCALARS: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "sql": (str,),
    "url": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


@dataclass(frozen=True, slots=True)
class ContractArg:
    name: str
    type: str
    # Optional arguments have a default (null for "none").
    required: bool
    default: Any = None


@dataclass(frozen=True, slots=True)
class Contract:
    """A built-in's arguments, from its ``builtin`` declaration."""

    name: str
    args: Mapping[str, ContractArg]
    source: str


def literal_json(value: ast.WithValue) -> Any:
    """Return the JSON of a ``with`` value that holds no ``state(...)``."""
    if isinstance(value, ast.Literal):
        return value.value
    if isinstance(value, ast.WithMap):
        return {arg.key.text: literal_json(arg.value) for arg in value.args}
    if isinstance(value, ast.WithList):
        return [literal_json(v) for v in value.items]
    raise ValueError("state(...) is not a constant")


def parse_contracts(sources: list[tuple[str, str]]) -> dict[str, Contract]:
    """Return the contracts the sources declare; raise ``GdlError`` naming every problem."""
    problems: list[Problem] = []
    out: dict[str, Contract] = {}
    for label, text in sources:
        parsed = parse_or_problem(text, label, "builtin")
        if isinstance(parsed, Problem):
            problems.append(parsed)
            continue
        for decl in parsed.decls:
            if not isinstance(decl, ast.BuiltinDecl):
                problems.append(Problem(decl.pos, "a contract file holds builtin declarations only"))
                continue
            if decl.name.text in out:
                problems.append(Problem(decl.pos, f"builtin {decl.name.text} is declared twice"))
                continue
            args: dict[str, ContractArg] = {}
            for arg in decl.args:
                if arg.type.text not in TYPES:
                    problems.append(Problem(arg.type.pos, f"unknown type {arg.type.text} (types: {', '.join(TYPES)})"))
                try:
                    default = None if arg.default is None else literal_json(arg.default)
                except ValueError as exc:
                    problems.append(Problem(arg.pos, str(exc)))
                    continue
                args[arg.name.text] = ContractArg(arg.name.text, arg.type.text, arg.default is None, default)
            out[decl.name.text] = Contract(decl.name.text, args, label)
    if problems:
        raise GdlError(render_all(problems, dict(sources)))
    return out


@cache
def builtin_contracts() -> dict[str, Contract]:
    """Return the contracts of goalrt's built-ins and the installed plugins' actions, by name."""
    from goalrt.actions.catalog import contract_sources

    return parse_contracts(contract_sources())


class Calls:
    """Check and compile ``with`` blocks, recording problems through ``fail``."""

    def __init__(self, fail: Callable[[ast.Pos, str], None], contracts: Mapping[str, Contract]) -> None:
        self.fail = fail
        self.contracts = contracts

    def compile(
        self, where: str, handler: ast.Handler | None, block: ast.WithArgs | None, params: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """Return the stored form of the action's call of a built-in, or None when it calls none."""
        contract = None if handler is None else self.contracts.get(handler.name.text)
        if contract is None:
            if block is not None:
                named = f"handler {handler.name.text} is not one" if handler is not None else "it names no handler"
                known = ", ".join(sorted(self.contracts)) or "none"
                self.fail(block.pos, f"{where}: with gives the arguments of a built-in handler; {named} ({known})")
            return None
        assert handler is not None
        given: dict[str, Any] = {}
        hosts: set[str] = set()
        urls: set[str] = set()
        for arg in block.args if block is not None else ():
            key = arg.key.text
            spec = contract.args.get(key)
            if spec is None:
                known = ", ".join(contract.args)
                self.fail(arg.key.pos, f"{where}: {key} is not an argument of {contract.name} (arguments: {known})")
                continue
            if key in given:
                self.fail(arg.key.pos, f"{where}: argument {key} is given twice")
                continue
            given[key] = self._value(arg.value, spec.type, spec.required, f"{where}: {key}", params)
            if spec.type == "url":
                urls.add(key)
                if isinstance(arg.value, ast.Literal) and isinstance(arg.value.value, str):
                    host = self._host(arg.value, f"{where}: {key}")
                    if host:
                        hosts.add(host)
        missing = [name for name, spec in contract.args.items() if spec.required and name not in given]
        if missing:
            at = block.pos if block is not None else handler.pos
            self.fail(at, f"{where}: {contract.name} needs {', '.join(missing)} (in a with block)")
        return {"args": given, "hosts": sorted(hosts), "urls": sorted(urls)}

    def _host(self, literal: ast.Literal, where: str) -> str | None:
        match = _URL.fullmatch(str(literal.value))
        host = None if match is None else match.group("host").rsplit("@", 1)[-1]
        if match is None or not host or "@" in match.group("host"):
            self.fail(literal.pos, f"{where}: a url starts with http:// or https:// and a host written out")
            return None
        if host.startswith("["):
            return host[1 : host.find("]")].lower()
        return host.rsplit(":", 1)[0].lower()

    def _value(self, value: ast.WithValue, kind: str, required: bool, where: str, params: Mapping[str, str]) -> Any:
        if kind == "sql":
            if not (isinstance(value, ast.Literal) and isinstance(value.value, str)):
                self.fail(value.pos, f"{where} must be a constant string (values go in params, bound as $1, $2, ...)")
                return None
            # Taken as written: no holes, so no value is ever spliced into the statement. Braces are
            # doubled so the worker's rendering gives them back as they are.
            return str(value.value).replace("{", "{{").replace("}", "}}")
        if isinstance(value, ast.StateRef):
            for hole in params_in_path(value.path.text):
                if hole not in params:
                    self.fail(value.path.pos, f"{where}: unbound variable {{{hole}}} in {value.path.text}")
            return {STATE_KEY: value.path.text}
        if isinstance(value, ast.WithMap):
            if kind not in ("object", "any"):
                self.fail(value.pos, f"{where} must be of type {kind}, got an object")
            out: dict[str, Any] = {}
            for arg in value.args:
                if arg.key.text.startswith("$"):
                    self.fail(arg.key.pos, f"{where}: a key starting with $ is reserved")
                self._template(arg.key.text, arg.key.pos, where, params)
                out[arg.key.text] = self._value(arg.value, "any", False, f"{where}.{arg.key.text}", params)
            return out
        if isinstance(value, ast.WithList):
            if kind not in ("list", "any"):
                self.fail(value.pos, f"{where} must be of type {kind}, got a list")
            return [self._value(v, "any", False, f"{where}[]", params) for v in value.items]
        scalar = value.value
        if scalar is None:
            if required:
                self.fail(value.pos, f"{where} is required: null is not a value of it")
            return None
        accepted = _SCALARS.get(kind)
        is_bool = isinstance(scalar, bool)
        if kind in ("object", "list") or (
            accepted is not None and (not isinstance(scalar, accepted) or is_bool != (kind == "boolean"))
        ):
            self.fail(value.pos, f"{where} must be of type {kind}, got {scalar!r}")
        if isinstance(scalar, str):
            self._template(scalar, value.pos, where, params)
        return scalar

    def _template(self, text: str, pos: ast.Pos, where: str, params: Mapping[str, str]) -> None:
        for match in TEMPLATE.finditer(text):
            names = [match.group("param")] if match.group("param") else params_in_path(match.group("state") or "")
            for name in names:
                if name not in params:
                    known = ", ".join(params) or "none"
                    self.fail(pos, f"{where}: unbound variable {{{name}}} in {text!r} (parameters: {known})")
        rest = TEMPLATE.sub("", text)
        if "{" in rest or "}" in rest:
            self.fail(
                pos,
                f"{where}: a brace in {text!r} is neither {{param}}, {{state:PATH}} nor {{secret.NAME}} "
                "(write {{ or }} for a brace)",
            )


__all__ = ["TYPES", "Calls", "Contract", "ContractArg", "builtin_contracts", "literal_json", "parse_contracts"]
