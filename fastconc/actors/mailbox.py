"""What travels through an actor's mailbox besides a tell's bare message:
asks (an envelope carrying where the reply goes), control items (stop
marker, receive timeout, a child's failure), and the reply slot of an ask
made from outside the pool."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from fastconc._support.report import report_uncaught as _report
from fastconc.errors import ChannelClosed

if TYPE_CHECKING:
    from fastconc.actors.cell import _Cell

# What a tell does when the mailbox is full.
OVERFLOW = ("block", "drop", "raise")


class _Envelope:
    __slots__ = ("msg", "reply")

    def __init__(self, msg: Any, reply: Future[Any] | _ReplySlot | None) -> None:
        self.msg = msg
        self.reply = reply


class _Timeout:
    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        self.generation = generation


class _ChildFailed:
    __slots__ = ("child", "exc")

    def __init__(self, child: _Cell, exc: BaseException) -> None:
        self.child = child
        self.exc = exc


class _ReplySlot:
    """Where the handler's answer to an ask() from outside the pool goes: the
    three Future methods _handle and _reject use, over a one-slot Channel."""

    __slots__ = ("channel",)

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def set_running_or_notify_cancel(self) -> bool:
        return not self.channel.closed  # closed: the asker timed out and left

    def set_result(self, result: Any) -> None:
        self._put((True, result))

    def set_exception(self, exc: BaseException) -> None:
        self._put((False, exc))

    def _put(self, answer: tuple[bool, Any]) -> None:
        try:
            self.channel.try_send(answer)
        except ChannelClosed:
            pass


def _settle(reply: Future[Any] | _ReplySlot, ok: bool, value: Any) -> None:
    """Answer an ask.  A Future runs its done callbacks here and lets their
    BaseExceptions (KeyboardInterrupt...) through: reported instead, or they
    would escape the actor's turn and leave it scheduled forever."""
    try:
        if ok:
            reply.set_result(value)
        else:
            reply.set_exception(value)
    except BaseException as exc:
        _report(exc)


class _StopMarker:
    __slots__ = ()


_CONTROL = frozenset({_Envelope, _StopMarker, _Timeout, _ChildFailed})
# Queued by request_stop() when the mailbox has room: the actor stops after
# what came before it.
_STOP = _StopMarker()


def _is_control(msg: object) -> bool:
    """A user message that happens to be one of our own wrapper types must
    still travel wrapped, or it would be taken for a control item."""
    return type(msg) in _CONTROL
