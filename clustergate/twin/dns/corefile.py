"""The Corefile's syntax, as CoreDNS (Caddy's ``caddyfile`` lexer and parser) reads it.

A Corefile is a list of server blocks: one or more keys (``cluster.local:53``,
``in-addr.arpa``, ``.:53``; space- or comma-separated) and a ``{ … }`` body of directives. A
directive is a plugin name and its arguments up to the end of the line; when the line ends
with ``{`` the plugin has a nested block of its own lines up to the matching ``}``. Words are
separated by whitespace; ``"…"`` quotes a word (``\\"`` inside it); ``#`` starts a comment
that runs to the end of the line.

What a plugin's arguments mean is not this module's business
(:mod:`clustergate.twin.dns.plugins`), except that a directive the server was not built with
is an error at parse time, as CoreDNS reports it (``Unknown directive 'forwrd'``). Errors
carry the file and line: ``/etc/Corefile:7 - Error during parsing: Unknown directive
'forwrd'``, which is what a crashing CoreDNS writes to its log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: The plugins node-cache is built with (kubernetes/dns ``cmd/node-cache/main.go``; the
#: ``prometheus`` directive is the metrics plugin).
NODE_CACHE_PLUGINS = frozenset(
    {
        "bind",
        "cache",
        "debug",
        "errors",
        "forward",
        "health",
        "hosts",
        "loadbalance",
        "log",
        "loop",
        "prometheus",
        "pprof",
        "reload",
        "rewrite",
        "template",
        "trace",
        "whoami",
    }
)

#: The plugins of a stock CoreDNS build that an EKS Corefile may name (coredns/coredns
#: ``plugin.cfg``, the commonly used part).
COREDNS_PLUGINS = NODE_CACHE_PLUGINS | {
    "acl",
    "any",
    "autopath",
    "chaos",
    "dns64",
    "dnssec",
    "file",
    "import",
    "k8s_external",
    "kubernetes",
    "local",
    "metadata",
    "minimal",
    "nsid",
    "ready",
    "root",
    "secondary",
    "timeouts",
    "tls",
    "transfer",
    "view",
}


class CorefileError(ValueError):
    """The Corefile cannot be read; ``str()`` is the line CoreDNS logs before exiting."""

    def __init__(self, filename: str, line: int, message: str) -> None:
        super().__init__(f"{filename}:{line} - Error during parsing: {message}")
        self.filename = filename
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Directive:
    """One plugin line: ``forward . 10.100.0.20 { force_tcp }`` is ``Directive("forward",
    (".", "10.100.0.20"), (Directive("force_tcp"),))``."""

    name: str
    args: tuple[str, ...] = ()
    block: tuple[Directive, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ServerBlock:
    keys: tuple[str, ...]
    directives: tuple[Directive, ...]
    line: int = field(default=0, compare=False)

    def all(self, name: str) -> list[Directive]:
        return [directive for directive in self.directives if directive.name == name]

    def first(self, name: str) -> Directive | None:
        return next(iter(self.all(name)), None)


@dataclass(frozen=True)
class _Token:
    text: str
    line: int
    quoted: bool = False

    @property
    def opens(self) -> bool:
        return self.text == "{" and not self.quoted

    @property
    def closes(self) -> bool:
        return self.text == "}" and not self.quoted


def tokens(text: str, filename: str = "Corefile") -> list[_Token]:
    """The words of ``text`` with their line numbers; comments dropped, quotes resolved."""
    found: list[_Token] = []
    line, index = 1, 0
    while index < len(text):
        char = text[index]
        if char == "\n":
            line += 1
            index += 1
        elif char.isspace():
            index += 1
        elif char == "#":
            while index < len(text) and text[index] != "\n":
                index += 1
        elif char == '"':
            start_line = line
            index += 1
            word: list[str] = []
            while True:
                if index >= len(text):
                    raise CorefileError(filename, start_line, "Unterminated quoted string")
                char = text[index]
                if char == "\\" and index + 1 < len(text) and text[index + 1] == '"':
                    word.append('"')
                    index += 2
                    continue
                if char == '"':
                    index += 1
                    break
                if char == "\n":
                    line += 1
                word.append(char)
                index += 1
            found.append(_Token("".join(word), start_line, True))
        else:
            start = index
            while index < len(text) and not text[index].isspace():
                index += 1
            found.append(_Token(text[start:index], line))
    return found


def parse(
    text: str, plugins: Iterable[str] = NODE_CACHE_PLUGINS, filename: str = "Corefile"
) -> list[ServerBlock]:
    """The server blocks of ``text``; :class:`CorefileError` at the first thing CoreDNS would
    refuse: unbalanced braces, a block without keys or body, a directive not among
    ``plugins``."""
    return _Parser(tokens(text, filename), frozenset(plugins), filename).blocks()


class _Parser:
    def __init__(self, found: list[_Token], plugins: frozenset[str], filename: str) -> None:
        self._tokens = found
        self._plugins = plugins
        self._filename = filename
        self._at = 0

    def _error(self, line: int, message: str) -> CorefileError:
        return CorefileError(self._filename, line, message)

    def _peek(self) -> _Token | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _last_line(self) -> int:
        return self._tokens[-1].line if self._tokens else 1

    def blocks(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while self._peek() is not None:
            blocks.append(self._server_block())
        return blocks

    def _server_block(self) -> ServerBlock:
        first = self._next()
        if first.opens or first.closes:
            raise self._error(first.line, f"Unexpected '{first.text}': a server block needs keys")
        keys = [first]
        while (token := self._peek()) is not None and token.line == first.line:
            if token.opens:
                break
            keys.append(self._next())
        brace = self._peek()
        if brace is None or not brace.opens:
            where = brace.line if brace is not None else first.line
            raise self._error(where, f"Expected '{{' after the server block keys {first.text}")
        self._next()
        # "a:53, b:53" and "a:53,b:53" are two keys each
        names = tuple(part for key in keys for part in key.text.split(",") if part)
        return ServerBlock(names, self._body(brace.line), first.line)

    def _body(self, opened: int, plugins: bool = True) -> tuple[Directive, ...]:
        """The lines up to the ``}`` that closes the block opened on line ``opened``: plugin
        directives in a server block, a plugin's own words in its nested block."""
        lines: list[Directive] = []
        while True:
            token = self._peek()
            if token is None:
                raise self._error(
                    self._last_line(), f"Unexpected EOF: the '{{' of line {opened} is not closed"
                )
            self._next()
            if token.closes:
                return tuple(lines)
            if token.opens:
                raise self._error(token.line, "Unexpected '{': a block needs a directive")
            if plugins and token.text not in self._plugins:
                raise self._error(token.line, f"Unknown directive '{token.text}'")
            lines.append(self._line(token))

    def _line(self, name: _Token) -> Directive:
        """``name`` and its arguments to the end of its line, and the block that ends it."""
        args: list[str] = []
        while (token := self._peek()) is not None and token.line == name.line:
            if token.closes:
                break
            self._next()
            if token.opens:
                return Directive(name.text, tuple(args), self._body(token.line, False), name.line)
            args.append(token.text)
        return Directive(name.text, tuple(args), (), name.line)
