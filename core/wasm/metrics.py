"""The metrics a Proxy-Wasm filter defines (``proxy_define_metric`` and friends).

Each filter has its own table, kept in :mod:`core.metrics` (so that ``/metrics``
exports it, summed across workers) under the filter's name: two filters that define
the same name have two series, and a filter's VM rebuilt after a trap, or replaced by a
reload, finds its values again. A filter may define ``limits.max_metrics`` metrics; past
that (or with a name longer than :data:`MAX_NAME`) a definition is refused. The table
is dropped when the last VM of the filter closes.

Semantics follow Envoy: a counter only grows (``increment`` by a negative delta is
refused; ``record`` adds), a gauge is set by ``record`` and moved either way by
``increment``, a histogram takes ``record``\\ ed values only; ``get`` reads a counter or a
gauge.
"""

from __future__ import annotations

from core import metrics as exported
from core.metrics import WASM_METRIC_KINDS, WasmMetric

MAX_NAME = 1024  # bytes of a metric's name
_owners: dict[str, set[int]] = {}  # filter name -> ids of its open FilterMetrics


class FilterMetrics:
    """The view of one VM: metric ids (this VM's own) onto its filter's table."""

    def __init__(self, filter_name: str, limit: int) -> None:
        self.filter = filter_name
        self.limit = limit
        self.table = exported.wasm_metrics(filter_name)
        self.ids: dict[tuple[str, str], int] = {}
        self.by_id: dict[int, WasmMetric] = {}
        _owners.setdefault(filter_name, set()).add(id(self))
        self.closed = False

    def define(self, kind: int, name: str) -> int | None:
        """The id of metric ``name`` of ``kind`` (0 counter, 1 gauge, 2 histogram), new
        or already defined; None when the filter may define no more."""
        key = (WASM_METRIC_KINDS[kind], name)
        mid = self.ids.get(key)
        if mid is not None:
            return mid
        metric = self.table.get(key)
        if metric is None:
            if len(self.table) >= self.limit or self.closed:
                return None
            metric = self.table[key] = WasmMetric(key[0])
        mid = self.ids[key] = len(self.ids) + 1
        self.by_id[mid] = metric
        return mid

    def get(self, mid: int) -> WasmMetric | None:
        return self.by_id.get(mid)

    def close(self) -> None:
        """This VM is done; the last of its filter takes the table away."""
        if self.closed:
            return
        self.closed = True
        owners = _owners.get(self.filter)
        if owners is not None:
            owners.discard(id(self))
            if not owners:
                del _owners[self.filter]
                exported.drop_wasm_metrics(self.filter)
