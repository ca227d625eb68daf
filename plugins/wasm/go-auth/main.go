// go-auth: asks an auth service before each request. The request pauses while a GET
// goes to `cluster` (DispatchHttpCall, with the client's `authorization` header and
// the other headers listed in `forward_headers`); a 200 resumes it, any other status
// answers 403 locally, and no answer (refused, timed out) answers 503.
// Built with proxy-wasm-go-sdk (Go >= 1.24, wasip1).
package main

import (
	"encoding/json"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type config struct {
	Cluster        string   `json:"cluster"`
	Path           string   `json:"path"`
	Authority      string   `json:"authority"`
	TimeoutMs      uint32   `json:"timeout_ms"`
	ForwardHeaders []string `json:"forward_headers"`
}

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{conf: config{Path: "/", TimeoutMs: 1000, ForwardHeaders: []string{"authorization"}}}
}

type pluginContext struct {
	types.DefaultPluginContext
	conf config
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		data, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(data, &p.conf)
		}
		if err != nil {
			proxywasm.LogCriticalf("go-auth: bad configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.conf.Cluster == "" {
		proxywasm.LogCritical("go-auth: config.cluster is required")
		return types.OnPluginStartStatusFailed
	}
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
	authority := h.conf.Authority
	if authority == "" {
		authority = h.conf.Cluster
	}
	headers := [][2]string{{":method", "GET"}, {":path", h.conf.Path}, {":authority", authority}}
	for _, name := range h.conf.ForwardHeaders {
		if value, err := proxywasm.GetHttpRequestHeader(name); err == nil {
			headers = append(headers, [2]string{strings.ToLower(name), value})
		}
	}
	if _, err := proxywasm.DispatchHttpCall(h.conf.Cluster, headers, nil, nil, h.conf.TimeoutMs, h.onAnswer); err != nil {
		proxywasm.LogErrorf("go-auth: cannot call %q: %v", h.conf.Cluster, err)
		deny(503, "auth service unavailable\n")
		return types.ActionPause
	}
	return types.ActionPause
}

// onAnswer runs with this request as the effective context (the SDK switches to it).
func (h *httpContext) onAnswer(numHeaders, _, _ int) {
	if numHeaders == 0 {
		proxywasm.LogWarnf("go-auth: no answer from %q", h.conf.Cluster)
		deny(503, "auth service unavailable\n")
		return
	}
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		deny(503, "auth service unavailable\n")
		return
	}
	for _, kv := range headers {
		if kv[0] == ":status" && kv[1] == "200" {
			if err := proxywasm.ResumeHttpRequest(); err != nil {
				proxywasm.LogErrorf("go-auth: cannot resume: %v", err)
			}
			return
		}
	}
	deny(403, "forbidden by go-auth\n")
}

func deny(status uint32, body string) {
	headers := [][2]string{{"content-type", "text/plain"}, {"x-go-auth", "denied"}}
	if err := proxywasm.SendHttpResponse(status, headers, []byte(body), -1); err != nil {
		proxywasm.LogErrorf("go-auth: cannot answer %d: %v", status, err)
	}
}
