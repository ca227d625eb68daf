// A filter built with proxy-wasm-go-sdk that reads what wasmgate hands it: its string
// configuration, properties (its own, the node's, Envoy's attributes through the SDK's
// typed properties package), a foreign function, and metrics it defines.
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/properties"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	config   string
	requests proxywasm.MetricCounter
	sizes    proxywasm.MetricHistogram
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		return types.OnPluginStartStatusFailed
	}
	p.config = string(data)
	p.requests = proxywasm.DefineCounterMetric("go_requests")
	p.sizes = proxywasm.DefineHistogramMetric("go_path_bytes")
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{plugin: p} }

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) add(name, value string) {
	_ = proxywasm.AddHttpRequestHeader(name, value)
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	h.add("x-go-config", h.plugin.config)
	if v, err := proxywasm.GetProperty([]string{"team"}); err == nil {
		h.add("x-go-team", string(v))
	}
	if v, err := proxywasm.GetProperty([]string{"node", "id"}); err == nil {
		h.add("x-go-node", string(v))
	}
	if v, err := properties.GetRouteName(); err == nil {
		h.add("x-go-route", v)
	}
	if v, err := properties.GetDownstreamRemotePort(); err == nil {
		h.add("x-go-port", strconv.FormatUint(v, 10))
	}
	if v, err := properties.GetRequestUrlPath(); err == nil {
		h.add("x-go-url-path", v)
		h.plugin.sizes.Record(uint64(len(v)))
	}
	if v, err := properties.IsDownstreamConnectionTls(); err == nil {
		h.add("x-go-mtls", strconv.FormatBool(v))
	}
	if v, err := proxywasm.CallForeignFunction("reverse", []byte("abc")); err == nil {
		h.add("x-go-foreign", string(v))
	}
	if _, err := proxywasm.CallForeignFunction("no_such_function", nil); err != nil {
		h.add("x-go-foreign-missing", err.Error())
	}
	h.plugin.requests.Increment(1)
	return types.ActionContinue
}
