"""An HTTP context that ends because its client left, as Envoy ends one.

Envoy destroys a stream as soon as its client goes (a closed connection, an HTTP/2
RST_STREAM), whatever its filters wait for: the Proxy-Wasm context gets
``proxy_on_done``, then ``proxy_on_log`` and ``proxy_on_delete`` at once, the gRPC
calls it made are cancelled and the gRPC streams it opened are reset, and nothing
is delivered to it after that. :func:`end_context` does the same for a
:class:`~core.wasm.host.Stream`, called by the exchange the moment the client is lost
(:meth:`core.wasm.adapter.WasmFilter.client_gone`):

- a pause (a header or trailer callback's StopIteration, a held body) is released
  with :data:`CLIENT_GONE` as the stream's answer, so the exchange stops there: no
  other filter runs, nothing goes upstream, and ``pause_timeout`` is not waited for;
- the HTTP calls the context made (``proxy_http_call`` with it as the effective
  context) are cancelled: their upstream connection is closed at once. Envoy makes
  such a call on the root context and lets it finish; here the gateway stops the
  upstream's work, and still delivers ``proxy_on_http_call_response`` to the root
  context, as a failed call (no headers, no body), so that an SDK drops what it keeps
  for the call (the Go and Rust SDKs skip the callback of a deleted context);
- its gRPC calls and streams end without a callback (:func:`close_owned`);
- the context's last callbacks run (``proxy_on_done``; ``proxy_on_log`` and
  ``proxy_on_delete`` now, or when the plugin calls ``proxy_done``), and the stream
  leaves the VM's live contexts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugin_sdk import LocalReply

if TYPE_CHECKING:
    from core.wasm.host import Stream
    from core.wasm.plugin import PluginVm

#: What a released pause answers when the client is gone: never written (the client
#: is not there); the exchange ends as a 499.
CLIENT_GONE = LocalReply(499, {"content-type": "text/plain; charset=utf-8"}, "client gone\n")


def end_context(vm: PluginVm, stream: Stream) -> None:
    """End ``stream``'s context now: its client is gone (see the module docstring)."""
    if stream.id not in vm.streams:
        return  # ended already (a trap, the end of the exchange)
    stream.local_reply = CLIENT_GONE
    resume = stream.resume
    if resume is not None:
        resume()  # the waiter goes on once the loop runs it, and finds CLIENT_GONE
    for token, (owner, task) in list(vm.http_call_owners.items()):
        if owner is stream:
            del vm.http_call_owners[token]
            task.cancel()
    if vm.instance is None:  # trapped meanwhile: no callback can run
        vm.streams.pop(stream.id, None)
        return
    vm.done(stream)  # (a plugin whose proxy_on_done says false ends it with proxy_done)
