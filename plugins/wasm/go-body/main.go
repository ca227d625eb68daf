// go-body: rewrites request and response bodies chunk by chunk. Each chunk has every
// occurrence of `from` replaced by `to`; the last chunk (end_of_stream) gets a trailer
// string appended. Nothing is buffered by the filter, so it works as bodies stream.
// A `from` split across two chunks is not replaced (the price of not buffering).
// Built with proxy-wasm-go-sdk (Go >= 1.24, wasip1).
package main

import (
	"bytes"
	"encoding/json"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type config struct {
	From            string `json:"from"`
	To              string `json:"to"`
	RequestTrailer  string `json:"request_trailer"`
	ResponseTrailer string `json:"response_trailer"`
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
		if err == nil {
			err = json.Unmarshal(data, &p.conf)
		}
		if err != nil {
			proxywasm.LogCriticalf("go-body: bad configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
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

// rewrite is one chunk's new bytes, and whether they differ from the chunk.
func (h *httpContext) rewrite(chunk []byte, last bool, trailer string) ([]byte, bool) {
	out := chunk
	if h.conf.From != "" {
		out = bytes.ReplaceAll(chunk, []byte(h.conf.From), []byte(h.conf.To))
	}
	if last && trailer != "" {
		out = append(append([]byte{}, out...), trailer...)
	}
	return out, !bytes.Equal(out, chunk)
}

func (h *httpContext) rewrites(trailer string) bool {
	return h.conf.From != "" && h.conf.From != h.conf.To || trailer != ""
}

// The body's length changes: drop content-length so the body goes out chunked.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	if !endOfStream && h.rewrites(h.conf.RequestTrailer) {
		_ = proxywasm.RemoveHttpRequestHeader("content-length")
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	if h.rewrites(h.conf.ResponseTrailer) {
		_ = proxywasm.RemoveHttpResponseHeader("content-length")
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpRequestBody(size int, endOfStream bool) types.Action {
	chunk := []byte{}
	if size > 0 {
		var err error
		if chunk, err = proxywasm.GetHttpRequestBody(0, size); err != nil {
			proxywasm.LogErrorf("go-body: cannot read a request chunk: %v", err)
			return types.ActionContinue
		}
	}
	if out, changed := h.rewrite(chunk, endOfStream, h.conf.RequestTrailer); changed {
		if err := proxywasm.ReplaceHttpRequestBody(out); err != nil {
			proxywasm.LogErrorf("go-body: cannot replace a request chunk: %v", err)
		}
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseBody(size int, endOfStream bool) types.Action {
	chunk := []byte{}
	if size > 0 {
		var err error
		if chunk, err = proxywasm.GetHttpResponseBody(0, size); err != nil {
			proxywasm.LogErrorf("go-body: cannot read a response chunk: %v", err)
			return types.ActionContinue
		}
	}
	if out, changed := h.rewrite(chunk, endOfStream, h.conf.ResponseTrailer); changed {
		if err := proxywasm.ReplaceHttpResponseBody(out); err != nil {
			proxywasm.LogErrorf("go-body: cannot replace a response chunk: %v", err)
		}
	}
	return types.ActionContinue
}
