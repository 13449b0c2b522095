"""What every libvirt provider shares: the contract's diff, the preview-time ownership check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import libvirt
from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ResourceProvider

from virtstack import contract
from virtstack.props import Props
from virtstack.provider import moves
from virtstack.provider.connection import with_connection

P = TypeVar("P", bound=Props)


class Provider(ResourceProvider, Generic[P]):
    # Provider classes live in an importable module, so dill pickles them by reference: state holds
    # no code, and an upgraded virtstack applies to resources created by an older one.
    serialize_as_secret_always = False
    kind: ClassVar[str] = contract.DOMAIN  # the contract's name for this kind of object

    def props(self, inputs: Mapping[str, Any]) -> P:
        """The engine's dict (the wire format) read as this kind's typed props."""
        raise NotImplementedError

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = contract.changed_keys(self.kind, olds, news)
        return DiffResult(
            changes=bool(changed),
            # A disk or domain whose host changes is moved (an update), not replaced.
            replaces=moves.move_replaces(self.kind, olds, news, contract.replaces(self.kind, olds, news)),
            # libvirt names are unique per host: a replacement that keeps the name must delete the old
            # object first; one with a new name (a new image's base volume) is created before.
            delete_before_replace="name" not in changed,
        )

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """At preview: an object this run would create must not be someone else's. (One already in
        this stack's state is its own — unless it moves to another host, where it is new.)"""
        if (
            (olds and not moves.is_moved(self.kind, olds, news))
            or not news.get("uri")
            or not isinstance(news.get("name"), str)
        ):
            return CheckResult(news, [])
        props = self.props(news)
        try:
            problem = with_connection(props.target.uri, lambda conn: self.problem(conn, props))
        except libvirt.libvirtError:
            problem = None  # an unreachable host fails the refresh and the create with its own error
        return CheckResult(news, [CheckFailure("name", problem)] if problem else [])

    def problem(self, conn: libvirt.virConnect, props: P) -> str | None:
        """Why creating this object on `conn` would touch something that is not ours, or None."""
        return None
