// higress-demo: a plugin written the way Higress documents for plugin authors, with
// github.com/higress-group/wasm-go: wrapper.SetCtx with a gjson config parser, a
// callout through wrapper.NewClusterClient, and pkg/log. Requests whose path starts
// with one of `block_paths` get a 403; the others pause while a GET goes to
// `service.path` on the service's cluster. A 2xx answer resumes the request with the
// answer's body (first line, at most 128 bytes) in `header`; anything else is a 403.
package main

import (
	"bytes"
	"errors"
	"net/http"
	"strings"

	"github.com/higress-group/proxy-wasm-go-sdk/proxywasm"
	"github.com/higress-group/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/higress-group/wasm-go/pkg/log"
	"github.com/higress-group/wasm-go/pkg/wrapper"
	"github.com/tidwall/gjson"
)

func main() {}

func init() {
	wrapper.SetCtx(
		"higress-demo",
		wrapper.ParseConfig(parseConfig),
		wrapper.ProcessRequestHeaders(onHttpRequestHeaders),
	)
}

type demoConfig struct {
	client     wrapper.HttpClient
	path       string
	header     string
	timeoutMs  uint32
	blockPaths []string
}

// parseConfig reads the plugin configuration (JSON) with gjson, as Higress plugins do.
func parseConfig(json gjson.Result, config *demoConfig) error {
	service := json.Get("service")
	name := service.Get("name").String()
	if name == "" {
		return errors.New("service.name is required")
	}
	port := service.Get("port").Int()
	host := service.Get("host").String()
	switch kind := service.Get("type").String(); kind {
	case "", "target":
		// The cluster name is passed to proxy_http_call as it is.
		config.client = wrapper.NewClusterClient(wrapper.TargetCluster{Cluster: name, Host: host})
	case "fqdn":
		// outbound|PORT||NAME, Higress's (and Istio's) name for a service's cluster.
		config.client = wrapper.NewClusterClient(wrapper.FQDNCluster{FQDN: name, Port: port, Host: host})
	case "static":
		// outbound|PORT||NAME.static, a Higress static-IP service.
		config.client = wrapper.NewClusterClient(wrapper.StaticIpCluster{ServiceName: name, Port: port, Host: host})
	default:
		return errors.New("service.type must be target, fqdn or static, not " + kind)
	}
	config.path = json.Get("path").String()
	if config.path == "" {
		config.path = "/"
	}
	config.header = json.Get("header").String()
	if config.header == "" {
		config.header = "x-higress-demo"
	}
	config.timeoutMs = uint32(json.Get("timeout_ms").Uint())
	if config.timeoutMs == 0 {
		config.timeoutMs = 1000
	}
	for _, item := range json.Get("block_paths").Array() {
		config.blockPaths = append(config.blockPaths, item.String())
	}
	log.Infof("higress-demo: calling %s on %s, blocking %d path prefixes", config.path, name, len(config.blockPaths))
	return nil
}

func onHttpRequestHeaders(ctx wrapper.HttpContext, config demoConfig) types.Action {
	path := ctx.Path()
	for _, prefix := range config.blockPaths {
		if strings.HasPrefix(path, prefix) {
			log.Infof("higress-demo: blocked %s", path)
			_ = proxywasm.SendHttpResponse(403, [][2]string{{"x-higress-demo", "blocked"}}, []byte("blocked by higress-demo\n"), -1)
			return types.ActionPause
		}
	}
	err := config.client.Get(config.path, nil, func(status int, _ http.Header, body []byte) {
		if status < 200 || status > 299 {
			log.Warnf("higress-demo: the service answered %d; denying %s", status, path)
			_ = proxywasm.SendHttpResponse(403, [][2]string{{"x-higress-demo", "denied"}}, []byte("denied by higress-demo\n"), -1)
			return
		}
		tag := firstLine(body)
		log.Infof("higress-demo: %s tagged %q", path, tag)
		_ = proxywasm.ReplaceHttpRequestHeader(config.header, tag)
		_ = proxywasm.ResumeHttpRequest()
	}, config.timeoutMs)
	if err != nil {
		log.Errorf("higress-demo: callout failed: %v", err)
		_ = proxywasm.SendHttpResponse(503, nil, []byte("higress-demo: service unavailable\n"), -1)
	}
	return types.ActionPause
}

func firstLine(body []byte) string {
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		body = body[:i]
	}
	if len(body) > 128 {
		body = body[:128]
	}
	return strings.TrimSpace(string(body))
}
