// Writing one JSON object to the console, key by key (kernel/lib/json.c). Used for the single-line
// `KM-REPORT {json}` ready report; nothing here emits a newline except json_end_line().
#pragma once

#include <stdint.h>

struct json {
    int fields;    // members written so far in the innermost open object or array
};

void json_begin(struct json *j);                     // "{"
void json_end_line(struct json *j);                  // "}\n"
void json_u64(struct json *j, const char *key, uint64_t value);
void json_hex(struct json *j, const char *key, uint64_t value);    // "0x..." string
void json_str(struct json *j, const char *key, const char *value); // escaped; bytes >= 0x80 raw
void json_bool(struct json *j, const char *key, int value);
// A raw, already valid JSON value (for example an array built by the caller).
void json_key(struct json *j, const char *key);
