"""The apps a conf names, loaded and checked in the master before any fork.

brimd runs four kinds of app (WSGI chains, TCP, UDP and daemons), each named
by the ``call`` option of its section. Two spellings of ``call`` exist:

``package.module.Class``
   A brim app: a class (or any callable) built in each worker as
   ``Class(name, conf, next_app)`` in a WSGI chain, ``Class(name, conf)``
   for TCP, UDP and daemons; with an optional ``parse_conf(name, conf)`` to
   check and digest the section and ``stats_conf(name, parsed)`` to declare
   stats. This is the spelling of the Brim.Net Core docs, and the only one
   TCP, UDP and daemon sections take.
``package.module:name`` or ``package.module:factory(args)``
   A plain WSGI callable, ``app(environ, start_response)``: a Flask or
   Bottle app object, what Django's ``get_wsgi_application()`` returns. The
   colon is the convention gunicorn, uWSGI and granian share. With
   parentheses the name is a factory, called once with the arguments
   written there, which may only be literals (strings, numbers, tuples,
   lists, dicts, True, False, None: read with :func:`ast.literal_eval`, never
   evaluated). A plain app passes no request on, so it can only be the last
   app of a chain.

Loading happens once, in the master: imports, factory calls, ``parse_conf``,
``stats_conf``, and a check that every callable has the shape its spelling
promises, so a Flask app named with a dot (or a brim class with a colon) is
one clear conf error, not a worker that dies on every request or at start,
again and again. Whatever the master loads is shared copy-on-write with every
worker, which then only builds the chain (:meth:`WSGIApps.build`).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from brim.conf import Conf, ConfError, ConfProblems, check_unknown, load_object
from brim.stats import StatsError, check_stats
from brim.wsgi.chain import build_chain

__all__ = ["BRIM_APP", "BRIM_WSGI_APP", "PLAIN_WSGI_APP", "AppSpec", "Reference", "WSGIApps",
           "app_stats", "load_apps", "load_class", "load_plain_app", "parse_app_conf",
           "parse_reference"]

WSGIApp = Callable[[dict, Callable], Any]

#: What a WSGI chain's ``package.module.Class`` is called with, in each worker.
BRIM_WSGI_APP = ("name", "conf", "next_app")
#: What TCP, UDP and daemon classes are called with, in each worker.
BRIM_APP = ("name", "conf")
#: What a plain WSGI app (``package.module:name``) is called with, per request.
PLAIN_WSGI_APP = ("environ", "start_response")


@dataclass
class AppSpec:
    """One brim app of a chain, as loaded in the master."""

    name: str
    cls: type
    conf: Any
    """What ``parse_conf`` returned, or the whole Conf for apps without one."""
    stats: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class WSGIApps:
    """A ``[wsgi]`` section's apps, loaded and checked: what each worker builds.

    ``links`` are the brim apps, in order; ``end`` is the plain WSGI app that
    closes the chain (``call = package.module:name``), or None, and then
    whatever no app answers is a 404.
    """

    section: str
    links: list[AppSpec]
    end: WSGIApp | None = None

    @property
    def stats(self) -> list[tuple[str, str]]:
        """The stats every brim app of the chain declared."""
        return [decl for spec in self.links for decl in spec.stats]

    def build(self) -> WSGIApp:
        """The ready WSGI app (in a worker): each brim app built with the next one."""
        return build_chain(self.links, self.end)


@dataclass
class Reference:
    """A ``call`` value taken apart: module, attribute path, and the factory call if any."""

    module: str
    attrs: tuple[str, ...]
    plain: bool
    """Spelled ``module:name`` (a plain WSGI app), not ``module.Class``."""
    args: tuple[Any, ...] | None = None
    """The factory's positional arguments; None when ``call`` calls nothing."""
    kwargs: dict[str, Any] = field(default_factory=dict)


def _dotted_path(node: ast.expr) -> tuple[str, ...] | None:
    """``a.b.c`` as ('a', 'b', 'c'); None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return tuple(reversed(parts))


def parse_reference(text: str) -> Reference:
    """Take a ``call`` value apart without importing anything; ValueError says what is wrong.

    ``package.module.Class`` is a brim app, ``package.module:name`` (or
    ``:obj.attr``) a plain WSGI app, ``package.module:factory(args)`` a
    factory called with literal arguments only.
    """
    text = text.strip()
    if ":" not in text:
        module, _, attr = text.rpartition(".")
        if "(" in text:
            raise ValueError(f"{text!r}: a factory is called after a colon, as in "
                             "package.module:create_app()")
        if not module or not attr:
            raise ValueError(f"{text!r} is not a dotted name like package.module.Class "
                             "(or package.module:app for a plain WSGI app)")
        return Reference(module, (attr,), plain=False)
    module, _, expr = text.partition(":")
    module, expr = module.strip(), expr.strip()
    try:
        tree = ast.parse(expr, mode="eval").body if module and expr else None
    except SyntaxError:
        tree = None
    call = tree if isinstance(tree, ast.Call) else None
    path = _dotted_path(call.func if call is not None else tree) if tree is not None else None
    if path is None or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"{text!r} is not package.module:name or "
                         "package.module:factory(literal arguments)")
    if call is None:
        return Reference(module, path, plain=True)
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(
            keyword.arg is None for keyword in call.keywords):
        raise ValueError(f"{text!r}: a factory's arguments are written out, not unpacked "
                         "with * or **")
    try:
        args = tuple(ast.literal_eval(arg) for arg in call.args)
        kwargs = {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}
    except ValueError:
        raise ValueError(f"{text!r}: a factory's arguments must be literals (strings, "
                         "numbers, tuples, lists, dicts, True, False, None)") from None
    return Reference(module, path, plain=True, args=args, kwargs=kwargs)


def _resolve(ref: Reference) -> Any:
    """Import the module and walk the attributes; ImportError says which part failed."""
    obj = load_object(f"{ref.module}.{ref.attrs[0]}")
    for done, attr in enumerate(ref.attrs[1:], 1):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            owner = ".".join(ref.attrs[:done])
            raise ImportError(f"{ref.module}:{owner} has no attribute {attr!r}") from None
    return obj


def _parameters(obj: Any) -> str | None:
    """What ``obj`` is called with, as ``(a, b, *rest)``; None when Python cannot tell."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    names = []
    for param in signature.parameters.values():
        prefix = ("*" if param.kind is param.VAR_POSITIONAL
                  else "**" if param.kind is param.VAR_KEYWORD else "")
        names.append(prefix + param.name)
    return "(" + ", ".join(names) + ")"


def _takes(obj: Any, shape: Sequence[str]) -> bool:
    """Whether ``obj`` can be called with ``len(shape)`` positional arguments.

    A callable whose signature Python cannot read (some C extensions) is
    given the benefit of the doubt.
    """
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*shape)
    except TypeError:
        return False
    return True


def _shape_text(shape: Sequence[str]) -> str:
    return "(" + ", ".join(shape) + ")"


def _refuse_shape(conf: Conf, name: str, call: str, obj: Any, ref: Reference,
                  shape: Sequence[str], what: str) -> ConfError:
    """The one-line error for a callable of the wrong shape, with the spelling to use."""
    if not callable(obj):
        return conf.error(name, "call", f"{call.strip()!r} is not callable (its type is "
                          f"{type(obj).__name__}); expected {what} taking {_shape_text(shape)}")
    takes = _parameters(obj) or "(?)"
    made = "returned an object that takes" if ref.args is not None else "takes"
    hint = ""
    if ref.plain and _takes(obj, BRIM_WSGI_APP) and inspect.isclass(obj):
        hint = (f"; it looks like a brim app class: name it with a dot, "
                f"call = {ref.module}.{'.'.join(ref.attrs)}")
    elif ref.plain and ref.args is None and _takes(obj, ()):
        hint = f"; if it is a factory, call it: {call.strip()}()"
    elif not ref.plain and shape == BRIM_WSGI_APP and _takes(obj, PLAIN_WSGI_APP):
        hint = (f"; it looks like a plain WSGI app: name it with a colon, "
                f"call = {ref.module}:{ref.attrs[0]}")
    return conf.error(name, "call", f"{call.strip()!r} {made} {takes}; expected {what} "
                      f"taking {_shape_text(shape)}{hint}")


def _call_value(conf: Conf, name: str, referrer: tuple[str, str]) -> str:
    if not conf.has_section(name):
        raise conf.error(referrer[0], referrer[1], f"{name!r} has no [{name}] section")
    call = conf.get(name, "call")
    if not call:
        raise conf.error(name, "call", "missing; set it to a class, like package.module.Class "
                         "(or, in a [wsgi] chain, to a WSGI app, like package.module:app)")
    return call


def load_class(conf: Conf, name: str, *, referrer: tuple[str, str],
               shape: Sequence[str] = BRIM_APP) -> type:
    """The brim app class named by ``call`` in section ``[name]``, or a ConfError.

    ``shape`` is what the class is called with in a worker; a class (or
    callable) that cannot take that many arguments is refused here, in the
    master, rather than killing every worker that builds it.
    """
    call = _call_value(conf, name, referrer)
    try:
        ref = parse_reference(call)
    except ValueError as err:
        raise conf.error(name, "call", str(err)) from None
    if ref.plain:
        raise conf.error(name, "call", f"{call!r} names a plain WSGI app, which only a "
                         "[wsgi] chain serves; here call names a class, like "
                         "package.module.Class")
    try:
        cls = _resolve(ref)
    except ImportError as err:
        raise conf.error(name, "call", str(err)) from None
    if not callable(cls) or not _takes(cls, shape):
        raise _refuse_shape(conf, name, call, cls, ref, shape, "a brim app class")
    return cls


def load_plain_app(conf: Conf, name: str, ref: Reference) -> WSGIApp:
    """The plain WSGI app ``[name] call`` names (calling its factory), checked for shape.

    A plain app reads nothing from its section, so any option besides
    ``call`` there is refused rather than silently ignored.
    """
    call = conf.get(name, "call") or ""
    check_unknown(conf, name, ["call"])
    try:
        obj = _resolve(ref)
    except ImportError as err:
        raise conf.error(name, "call", str(err)) from None
    if ref.args is not None:
        if not callable(obj):
            raise conf.error(name, "call", f"{ref.module + ':' + '.'.join(ref.attrs)!r} is not "
                             f"callable (its type is {type(obj).__name__}), so it is no "
                             "factory")
        try:
            obj = obj(*ref.args, **ref.kwargs)
        except (Exception, SystemExit) as err:  # sys.exit('no DATABASE_URL') included
            text = " ".join(str(err).split())  # one line, whatever the factory raised
            raise conf.error(name, "call", f"{call.strip()!r} failed: {type(err).__name__}"
                             + (f": {text}" if text else "")) from None
    if not callable(obj) or not _takes(obj, PLAIN_WSGI_APP):
        raise _refuse_shape(conf, name, call, obj, ref, PLAIN_WSGI_APP, "a WSGI app")
    return obj


def parse_app_conf(cls: type, name: str, conf: Conf, accepted: Iterable[str] = ()) -> Any:
    """Run ``cls.parse_conf(name, conf)`` if it has one, turning failures into ConfError.

    An app that rejects its conf raises any exception whose text is meant for
    the user (the HelloWorld of the WSGI guide raises ``Exception('[helloworld]
    you must configure a path to serve.')``); that text becomes the error as it is.

    An app that lists the options of its section in ``conf_options`` (names,
    or :class:`brim.conf.Option` declarations) gets every other option in
    ``[name]`` refused, with a did-you-mean, as brimd's own sections do;
    ``call`` and ``accepted`` (a TCP or UDP section's own options) are
    always allowed. Apps without the list are not checked.
    """
    declared = getattr(cls, "conf_options", None)
    if declared is not None:
        known = {"call", *accepted, *(getattr(o, "name", o) for o in declared)}
        check_unknown(conf, name, known)
    parse = getattr(cls, "parse_conf", None)
    if parse is None:
        return conf
    try:
        return parse(name, conf)
    except ConfError:
        raise
    except Exception as err:
        message = str(err) or f"[{name}] parse_conf failed with {type(err).__name__}"
        raise ConfError(message) from err


def app_stats(cls: type, name: str, parsed: Any) -> list[tuple[str, str]]:
    """The ``(stat_name, stat_type)`` pairs ``cls.stats_conf`` declares, checked."""
    declare = getattr(cls, "stats_conf", None)
    if declare is None:
        return []
    try:
        pairs = list(declare(name, parsed) or ())
    except Exception as err:
        raise ConfError(f"[{name}] stats_conf failed: {type(err).__name__}: {err}") from err
    try:
        checked = check_stats(pairs, f"[{name}] stats_conf")
    except StatsError as err:
        raise ConfError(str(err)) from None
    return [pair for pair in checked if pair in pairs]


def load_apps(conf: Conf, section: str) -> WSGIApps:
    """Load and check the apps listed by ``apps`` in ``section`` (master side, before fork).

    This is the one place a WSGI section's ``call`` values become apps:
    wherever apps are loaded (the master today), this is what loads them.
    """
    names = conf.get_list(section, "apps")
    if not names:
        raise conf.error(section, "apps", "no apps listed; set apps = name1 name2 ...")
    links: list[AppSpec] = []
    end: WSGIApp | None = None
    problems = ConfProblems()  # every app is loaded, so every broken one is named
    for position, name in enumerate(names, 1):
        with problems.check():
            call = _call_value(conf, name, (section, "apps"))
            try:
                ref = parse_reference(call)
            except ValueError as err:
                raise conf.error(name, "call", str(err)) from None
            if ref.plain:
                if position != len(names):
                    raise conf.error(section, "apps", f"{name!r} is a plain WSGI app "
                                     f"(call = {call.strip()}), which passes no request on, "
                                     "so it must be the last app listed")
                end = load_plain_app(conf, name, ref)
                continue
            cls = load_class(conf, name, referrer=(section, "apps"), shape=BRIM_WSGI_APP)
            parsed = parse_app_conf(cls, name, conf)
            links.append(AppSpec(name, cls, parsed, app_stats(cls, name, parsed)))
    problems.raise_any()
    return WSGIApps(section, links, end)
