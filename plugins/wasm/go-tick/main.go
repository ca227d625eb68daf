// go-tick: a timer-driven filter. Every `tick_ms` the root context counts a tick: in
// shared data (key "go-tick.ticks", an updated-with-CAS decimal) and in the counter
// metric "go_tick_ticks". Responses carry the shared count in `header`.
// Built with proxy-wasm-go-sdk (Go >= 1.24, wasip1).
package main

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const ticksKey = "go-tick.ticks"

type config struct {
	TickMs uint32 `json:"tick_ms"`
	Header string `json:"header"`
}

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{conf: config{TickMs: 1000, Header: "x-go-ticks"}}
}

type pluginContext struct {
	types.DefaultPluginContext
	conf  config
	ticks proxywasm.MetricCounter
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		data, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(data, &p.conf)
		}
		if err != nil {
			proxywasm.LogCriticalf("go-tick: bad configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	p.ticks = proxywasm.DefineCounterMetric("go_tick_ticks")
	if err := proxywasm.SetTickPeriodMilliSeconds(p.conf.TickMs); err != nil {
		proxywasm.LogCriticalf("go-tick: cannot set the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) OnTick() {
	for {
		count, cas := readTicks()
		err := proxywasm.SetSharedData(ticksKey, []byte(strconv.FormatUint(count+1, 10)), cas)
		if err == nil {
			break
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			proxywasm.LogErrorf("go-tick: cannot store the tick count: %v", err)
			return
		}
	}
	p.ticks.Increment(1)
}

func readTicks() (uint64, uint32) {
	data, cas, err := proxywasm.GetSharedData(ticksKey)
	if err != nil {
		return 0, 0
	}
	count, _ := strconv.ParseUint(string(data), 10, 64)
	return count, cas
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{header: p.conf.Header}
}

type httpContext struct {
	types.DefaultHttpContext
	header string
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if h.header != "" {
		count, _ := readTicks()
		_ = proxywasm.ReplaceHttpResponseHeader(h.header, strconv.FormatUint(count, 10))
	}
	return types.ActionContinue
}
