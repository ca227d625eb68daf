// go-headers: adds and removes request and response headers, as its JSON config says,
// and logs each request it sees. Built with proxy-wasm-go-sdk (Go >= 1.24, wasip1).
package main

import (
	"encoding/json"
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// config is the plugin configuration (manifest.json holds its JSON Schema).
type config struct {
	RequestAdd     map[string]string `json:"request_add"`
	RequestRemove  []string          `json:"request_remove"`
	ResponseAdd    map[string]string `json:"response_add"`
	ResponseRemove []string          `json:"response_remove"`
}

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{}
}

type pluginContext struct {
	types.DefaultPluginContext
	conf config
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		data, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogCriticalf("go-headers: cannot read the configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
		if err := json.Unmarshal(data, &p.conf); err != nil {
			proxywasm.LogCriticalf("go-headers: bad configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	proxywasm.LogInfof(
		"go-headers: configured (%d request headers to add, %d to remove; %d response headers to add, %d to remove)",
		len(p.conf.RequestAdd), len(p.conf.RequestRemove), len(p.conf.ResponseAdd), len(p.conf.ResponseRemove),
	)
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{conf: &p.conf}
}

type httpContext struct {
	types.DefaultHttpContext
	conf *config
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	for _, name := range h.conf.RequestRemove {
		report(proxywasm.RemoveHttpRequestHeader(name), "remove request header", name)
	}
	for name, value := range h.conf.RequestAdd {
		report(proxywasm.ReplaceHttpRequestHeader(name, value), "set request header", name)
	}
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	proxywasm.LogInfof("go-headers: %s %s", method, path)
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	for _, name := range h.conf.ResponseRemove {
		report(proxywasm.RemoveHttpResponseHeader(name), "remove response header", name)
	}
	for name, value := range h.conf.ResponseAdd {
		report(proxywasm.ReplaceHttpResponseHeader(name, value), "set response header", name)
	}
	return types.ActionContinue
}

func report(err error, what, name string) {
	if err != nil {
		proxywasm.LogWarn(fmt.Sprintf("go-headers: cannot %s %q: %v", what, name, err))
	}
}
