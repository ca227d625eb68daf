/* Hand-written parser for c-filter's flat JSON configuration (see config.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

struct parser {
    const char *s;
    size_t n, pos;
    char *error;
    size_t error_size;
};

static int fail(struct parser *p, const char *what) {
    snprintf(p->error, p->error_size, "%s at offset %u", what, (unsigned)p->pos);
    return 0;
}

static int peek(struct parser *p) {
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static int eat(struct parser *p, char c) {
    if (peek(p) != c) return 0;
    p->pos++;
    return 1;
}

/* Reads a JSON string into out (capacity cap, NUL-terminated). Escapes: \" \\ \/ \n \t. */
static int parse_string(struct parser *p, char *out, size_t cap) {
    if (!eat(p, '"')) return fail(p, "expected a string");
    size_t len = 0;
    while (p->pos < p->n) {
        char c = p->s[p->pos++];
        if (c == '"') {
            out[len] = '\0';
            return 1;
        }
        if (c == '\\') {
            if (p->pos >= p->n) break;
            char e = p->s[p->pos++];
            if (e == 'n') c = '\n';
            else if (e == 't') c = '\t';
            else if (e == '"' || e == '\\' || e == '/') c = e;
            else return fail(p, "unsupported escape");
        } else if ((unsigned char)c < 0x20) {
            return fail(p, "control character in string");
        }
        if (len + 1 >= cap) return fail(p, "string too long");
        out[len++] = c;
    }
    return fail(p, "unterminated string");
}

static int parse_u32(struct parser *p, uint32_t *out) {
    peek(p);
    size_t start = p->pos;
    uint64_t v = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        v = v * 10 + (uint64_t)(p->s[p->pos++] - '0');
        if (v > 86400000u) return fail(p, "integer out of range");
    }
    if (p->pos == start) return fail(p, "expected a non-negative integer");
    *out = (uint32_t)v;
    return 1;
}

static void set_defaults(struct c_filter_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->deny_header, "x-block");
    strcpy(c->count_header, "x-c-filter-count");
    strcpy(c->response_header, "x-c-filter");
    strcpy(c->response_value, "c-filter");
}

int c_filter_config_parse(const char *text, size_t size, struct c_filter_config *out,
                          char *error, size_t error_size) {
    struct parser p = {text, size, 0, error, error_size};
    set_defaults(out);
    if (peek(&p) == -1) return 1;
    if (!eat(&p, '{')) return fail(&p, "configuration must be a JSON object");
    if (!eat(&p, '}')) {
        for (;;) {
            char key[32];
            if (!parse_string(&p, key, sizeof key)) return 0;
            if (!eat(&p, ':')) return fail(&p, "expected ':'");
            int ok;
            if (strcmp(key, "deny_header") == 0)
                ok = parse_string(&p, out->deny_header, sizeof out->deny_header);
            else if (strcmp(key, "count_header") == 0)
                ok = parse_string(&p, out->count_header, sizeof out->count_header);
            else if (strcmp(key, "response_header") == 0)
                ok = parse_string(&p, out->response_header, sizeof out->response_header);
            else if (strcmp(key, "response_value") == 0)
                ok = parse_string(&p, out->response_value, sizeof out->response_value);
            else if (strcmp(key, "body_from") == 0)
                ok = parse_string(&p, out->body_from, sizeof out->body_from);
            else if (strcmp(key, "body_to") == 0)
                ok = parse_string(&p, out->body_to, sizeof out->body_to);
            else if (strcmp(key, "tick_ms") == 0)
                ok = parse_u32(&p, &out->tick_ms);
            else {
                snprintf(error, error_size, "unknown key '%s'", key);
                return 0;
            }
            if (!ok) return 0;
            if (eat(&p, ',')) continue;
            if (eat(&p, '}')) break;
            return fail(&p, "expected ',' or '}'");
        }
    }
    if (peek(&p) != -1) return fail(&p, "trailing characters");
    return 1;
}
