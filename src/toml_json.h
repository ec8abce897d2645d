/* TOML 1.0 to jansson, with source positions (C glue over tomlplusplus).
 *
 * Types map as: integer -> json_integer, float -> json_real, boolean ->
 * json_true/json_false, string -> json_string, array -> json_array, table
 * (and inline table) -> json_object, date/time values -> RFC 3339 strings
 * ("1979-05-27T07:32:00Z", "1979-05-27T07:32:00" for a local date-time,
 * "1979-05-27" for a date, "07:32:00" for a time). NaN and infinities are
 * refused (JSON has no such numbers). No C++ exception ever leaves this
 * module. Hostile input is bounded: files up to TOML_JSON_MAX_FILE_BYTES,
 * at most 1024 '.' separators of dotted keys in a document (the parser
 * recurses per level), tables and arrays nested at most 512 deep; error
 * messages are always one line.
 *
 * Paths name every key and array element of the document: `server.listen`,
 * `repos[1].image`, `build.env.FOO`. A key that is not a TOML bare key
 * ([A-Za-z0-9_-]+) is written quoted, as TOML would: `a."b.c"`. */
#ifndef RUNBOAT_TOML_JSON_H
#define RUNBOAT_TOML_JSON_H

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where each path of a parsed document was defined (holds the parsed
 * document; lookups walk it, nothing is stored per key). */
struct toml_positions;

/* Largest TOML file toml_json_parse_file reads. */
#define TOML_JSON_MAX_FILE_BYTES (4u * 1024 * 1024)

/* Parses the TOML file at path. Returns a new JSON object (owned by the
 * caller, json_decref) and, when positions is not NULL, stores a new
 * positions table in *positions (owned, toml_positions_free). On failure
 * returns NULL, leaves *positions NULL and writes one line into err:
 * "FILE:LINE:COL: message" for a syntax error, "FILE: message" when the
 * file cannot be read (missing, not a regular file, larger than
 * TOML_JSON_MAX_FILE_BYTES). */
json_t *toml_json_parse_file(const char *path, struct toml_positions **positions, char *err,
			     size_t errlen);

/* Same for a document in memory; name is the file name used in positions
 * and errors (e.g. "<string>"). text need not be NUL-terminated. */
json_t *toml_json_parse_string(const char *text, size_t len, const char *name,
			       struct toml_positions **positions, char *err, size_t errlen);

/* 1-based line and column where path (see above) was defined: the key for
 * a key/value or a [table] header, the [[header]] or the value for an
 * array element. 0 when the path is unknown (or pos is NULL). */
unsigned toml_positions_line(const struct toml_positions *pos, const char *path);
unsigned toml_positions_column(const struct toml_positions *pos, const char *path);

void toml_positions_free(struct toml_positions *pos);

/* Path helpers building the same names as the positions table: parent may
 * be NULL or "" for the root. Return a new string owned by the caller
 * (free); out of memory aborts. */
char *toml_path_key(const char *parent, const char *key);
char *toml_path_index(const char *parent, size_t index);

#ifdef __cplusplus
}
#endif

#endif
