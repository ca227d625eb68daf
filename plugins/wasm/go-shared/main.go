// go-shared: numbers requests with a counter in shared data. Each request reads the
// counter and its CAS, writes counter+1 with that CAS and, when another writer got
// there first (CasMismatch), reads and tries again, up to `max_retries` times. The
// number goes upstream and back to the client in `header`.
// Built with proxy-wasm-go-sdk (Go >= 1.24, wasip1).
package main

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type config struct {
	Key        string `json:"key"`
	Header     string `json:"header"`
	MaxRetries int    `json:"max_retries"`
}

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{conf: config{Key: "go-shared.requests", Header: "x-go-shared-count", MaxRetries: 16}}
}

type pluginContext struct {
	types.DefaultPluginContext
	conf    config
	retries proxywasm.MetricCounter
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		data, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(data, &p.conf)
		}
		if err != nil {
			proxywasm.LogCriticalf("go-shared: bad configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	p.retries = proxywasm.DefineCounterMetric("go_shared_cas_retries")
	return types.OnPluginStartStatusOK
}

// next increments the shared counter; its new value, or an error after too many retries.
func (p *pluginContext) next() (uint64, error) {
	for attempt := 0; ; attempt++ {
		var count uint64
		data, cas, err := proxywasm.GetSharedData(p.conf.Key)
		switch {
		case err == nil:
			count, _ = strconv.ParseUint(string(data), 10, 64)
		case errors.Is(err, types.ErrorStatusNotFound):
			cas = 0
		default:
			return 0, err
		}
		count++
		err = proxywasm.SetSharedData(p.conf.Key, []byte(strconv.FormatUint(count, 10)), cas)
		if err == nil {
			return count, nil
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) || attempt >= p.conf.MaxRetries {
			return 0, err
		}
		p.retries.Increment(1)
	}
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	count  string
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	count, err := h.plugin.next()
	if err != nil {
		proxywasm.LogErrorf("go-shared: cannot update %q: %v", h.plugin.conf.Key, err)
		return types.ActionContinue
	}
	h.count = strconv.FormatUint(count, 10)
	_ = proxywasm.ReplaceHttpRequestHeader(h.plugin.conf.Header, h.count)
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if h.count != "" {
		_ = proxywasm.ReplaceHttpResponseHeader(h.plugin.conf.Header, h.count)
	}
	return types.ActionContinue
}
