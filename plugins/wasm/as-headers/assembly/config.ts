// Configuration of the as-headers filter and a tiny parser for it.
//
// AssemblyScript 0.14 has no JSON in its standard library, and the filter only
// needs a flat object of strings and non-negative integers, so this parser
// accepts exactly that: `{"key": "string" | integer, ...}`. Anything else
// (nesting, arrays, floats, unknown keys, wrong types) is a configuration
// error: proxy_on_configure returns false and the host refuses the plugin at
// load time. The gateway validates the same shape with the JSON Schema in
// manifest.json before the module ever sees it.

export class Config {
  // Header added to every request that goes upstream (empty: none).
  request_header: string = "x-wasm";
  request_value: string = "as";
  // Header added to every response (empty: none).
  response_header: string = "x-wasm-filter";
  response_value: string = "as-headers";
  // Requests whose :path starts with this prefix get a local 403 (empty: off).
  deny_path_prefix: string = "";
  // When set, every request is paused while a GET to this upstream is made;
  // a 2xx answer continues the request, anything else denies it with 403.
  call_upstream: string = "";
  call_path: string = "/";
  call_authority: string = "";
  call_timeout_ms: u32 = 1000;
  // Period of proxy_on_tick (0: no timer); each tick increments a counter.
  tick_ms: u32 = 0;
}

export class ParseResult {
  config: Config = new Config();
  error: string = "";
}

class Parser {
  src: string;
  pos: i32 = 0;

  constructor(src: string) {
    this.src = src;
  }

  skipSpace(): void {
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  peek(): i32 {
    this.skipSpace();
    return this.pos < this.src.length ? this.src.charCodeAt(this.pos) : -1;
  }

  eat(c: i32): bool {
    if (this.peek() == c) {
      this.pos++;
      return true;
    }
    return false;
  }

  // Returns null on a malformed string. Supports the escapes \" \\ \/ \n \t.
  parseString(): string | null {
    if (!this.eat(0x22)) return null;
    let out = "";
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos++);
      if (c == 0x22) return out;
      if (c == 0x5c) {
        if (this.pos >= this.src.length) return null;
        const e = this.src.charCodeAt(this.pos++);
        if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
        else if (e == 0x6e) out += "\n";
        else if (e == 0x74) out += "\t";
        else return null;
      } else {
        out += String.fromCharCode(c);
      }
    }
    return null;
  }

  // Non-negative integer below 2^31; -1 when malformed.
  parseInteger(): i64 {
    this.skipSpace();
    const start = this.pos;
    let value: i64 = 0;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c < 0x30 || c > 0x39) break;
      value = value * 10 + (c - 0x30);
      if (value > 0x7fffffff) return -1;
      this.pos++;
    }
    return this.pos == start ? -1 : value;
  }
}

function isStringKey(key: string): bool {
  return key == "request_header" || key == "request_value" ||
    key == "response_header" || key == "response_value" ||
    key == "deny_path_prefix" || key == "call_upstream" ||
    key == "call_path" || key == "call_authority";
}

function isIntegerKey(key: string): bool {
  return key == "call_timeout_ms" || key == "tick_ms";
}

function setString(config: Config, key: string, value: string): void {
  if (key == "request_header") config.request_header = value;
  else if (key == "request_value") config.request_value = value;
  else if (key == "response_header") config.response_header = value;
  else if (key == "response_value") config.response_value = value;
  else if (key == "deny_path_prefix") config.deny_path_prefix = value;
  else if (key == "call_upstream") config.call_upstream = value;
  else if (key == "call_path") config.call_path = value;
  else if (key == "call_authority") config.call_authority = value;
}

function setInteger(config: Config, key: string, value: u32): void {
  if (key == "call_timeout_ms") config.call_timeout_ms = value;
  else if (key == "tick_ms") config.tick_ms = value;
}

// An empty (or all-whitespace) configuration means "all defaults".
export function parseConfig(text: string): ParseResult {
  const result = new ParseResult();
  const p = new Parser(text);
  if (p.peek() == -1) return result;
  if (!p.eat(0x7b)) {
    result.error = "configuration must be a JSON object";
    return result;
  }
  if (p.eat(0x7d)) return finish(p, result);
  while (true) {
    const key = p.parseString();
    if (key === null) {
      result.error = "expected a quoted key at offset " + p.pos.toString();
      return result;
    }
    const k = key;
    if (!p.eat(0x3a)) {
      result.error = "expected ':' after key '" + k + "'";
      return result;
    }
    if (isStringKey(k)) {
      const value = p.parseString();
      if (value === null) {
        result.error = "'" + k + "' must be a string";
        return result;
      }
      setString(result.config, k, value);
    } else if (isIntegerKey(k)) {
      const value = p.parseInteger();
      if (value < 0) {
        result.error = "'" + k + "' must be a non-negative integer";
        return result;
      }
      setInteger(result.config, k, <u32>value);
    } else {
      result.error = "unknown key '" + k + "'";
      return result;
    }
    if (p.eat(0x2c)) continue;
    if (p.eat(0x7d)) return finish(p, result);
    result.error = "expected ',' or '}' at offset " + p.pos.toString();
    return result;
  }
  return result;
}

function finish(p: Parser, result: ParseResult): ParseResult {
  if (p.peek() != -1) result.error = "trailing characters after the JSON object";
  return result;
}
