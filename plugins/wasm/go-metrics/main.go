// go-metrics: defines its own metrics and updates them on every request: a counter of
// requests, a gauge of requests in flight, a histogram of request path lengths. Names
// start with `prefix`. The response carries the counter's value in
// x-go-metrics-requests (read back from the host with proxy_get_metric).
// Built with proxy-wasm-go-sdk (Go >= 1.24, wasip1).
package main

import (
	"encoding/json"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type config struct {
	Prefix string `json:"prefix"`
}

type metrics struct {
	requests proxywasm.MetricCounter
	inFlight proxywasm.MetricGauge
	pathLen  proxywasm.MetricHistogram
}

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{conf: config{Prefix: "go_metrics"}}
}

type pluginContext struct {
	types.DefaultPluginContext
	conf config
	m    metrics
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		data, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(data, &p.conf)
		}
		if err != nil {
			proxywasm.LogCriticalf("go-metrics: bad configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	p.m = metrics{
		requests: proxywasm.DefineCounterMetric(p.conf.Prefix + "_requests"),
		inFlight: proxywasm.DefineGaugeMetric(p.conf.Prefix + "_in_flight"),
		pathLen:  proxywasm.DefineHistogramMetric(p.conf.Prefix + "_path_bytes"),
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{m: &p.m}
}

type httpContext struct {
	types.DefaultHttpContext
	m       *metrics
	counted bool
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	h.m.requests.Increment(1)
	h.m.inFlight.Add(1)
	h.counted = true
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	h.m.pathLen.Record(uint64(len(path)))
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	value := strconv.FormatUint(h.m.requests.Value(), 10)
	_ = proxywasm.ReplaceHttpResponseHeader("x-go-metrics-requests", value)
	return types.ActionContinue
}

func (h *httpContext) OnHttpStreamDone() {
	if h.counted {
		h.m.inFlight.Add(-1)
	}
}
